"""What the AWS integrations add to a cold start, measured with `python -X importtime`.

Each configuration runs `python -X importtime -c "import handler"` in a fresh interpreter and
reads the cumulative import time of `handler`, which covers the whole cold start: imports,
settings, the database set-up and `create_app`. Configurations:

  default           no AWS feature: the bundled SQLite file (boto3 must stay unloaded)
  s3 snapshot       DB_SNAPSHOT_S3_URI: import boto3, make an S3 client, download + verify
                    the bundled users.db (8 KB) as the snapshot, build the engine
  secrets manager   DATABASE_SECRET_ARN: import boto3, make a client, read a URL secret

AWS is not reachable from here, so S3 and Secrets Manager are a minimal stub on 127.0.0.1
(AWS_ENDPOINT_URL_S3 / AWS_ENDPOINT_URL_SECRETS_MANAGER): the figures include a loopback
round trip, not a real one (add ~10-30 ms in-region). Also measured: `import boto3` alone,
and, in one interpreter, the steps a feature adds after the default import.

Rounds are interleaved (the machine is noisy) and medians quoted, with the default cold
start, measured in the same run, as the baseline.

    .venv/bin/python bench/aws_import_cost.py [--rounds 15]
"""

from __future__ import annotations

import argparse
import hashlib
import http.server
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
BUNDLE = ROOT / "data" / "users.db"
SECRET_ARN = "arn:aws:secretsmanager:us-east-1:123456789012:secret:users-api/db-AbCdEf"
_IMPORTTIME_LINE = re.compile(r"import time:\s+(\d+) \|\s+(\d+) \|(\s*)(\S+)\s*$")

_STEPS_PROBE = """
import json, sys, time
started = time.perf_counter()
import handler
imported = time.perf_counter()
assert not any(m.split(".")[0] in ("boto3", "botocore") for m in sys.modules), "boto3 on the default path"
import boto3
boto3_imported = time.perf_counter()
from app.storage import aws
aws.client("s3")
first_client = time.perf_counter()
print(json.dumps({"import handler (default)": imported - started, "+ import boto3": boto3_imported - imported,
                  "+ first client (S3)": first_client - boto3_imported}))
"""


class _StubAws(http.server.BaseHTTPRequestHandler):
    """GetObject of any key returns the bundled database; GetSecretValue returns a URL."""

    snapshot: bytes = b""
    secret_url: str = ""

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("ETag", '"' + hashlib.md5(self.snapshot).hexdigest() + '"')
        self.send_header("Content-Length", str(len(self.snapshot)))
        self.end_headers()
        self.wfile.write(self.snapshot)

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        body = json.dumps({"ARN": SECRET_ARN, "Name": "users-api/db", "SecretString": self.secret_url}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/x-amz-json-1.1")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


@contextmanager
def _stub_aws(secret_url: str) -> Iterator[str]:
    _StubAws.snapshot = BUNDLE.read_bytes()
    _StubAws.secret_url = secret_url
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _StubAws)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _importtime(statement: str, module: str, env: dict[str, str]) -> float:
    """Cumulative import time of top-level `module` in ms, from `python -X importtime -c statement`."""
    out = subprocess.run(
        [sys.executable, "-X", "importtime", "-c", statement], env=env, cwd=ROOT, capture_output=True, text=True
    )
    if out.returncode != 0:
        raise RuntimeError(out.stderr[-2000:])
    for line in out.stderr.splitlines():
        match = _IMPORTTIME_LINE.match(line)
        if match and match[3] == " " and match[4] == module:
            return int(match[2]) / 1000
    raise RuntimeError(f"{module} not in the importtime output of {statement!r}")


def _summary(name: str, values: list[float], baseline: float) -> str:
    median = statistics.median(values)
    return f"{name:<28}{median:>9.1f}{min(values):>9.1f}{max(values):>9.1f}{median / baseline:>10.2f}x"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=15)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        secret_db = Path(tmp) / "secret-target.db"
        shutil.copyfile(BUNDLE, secret_db)
        with _stub_aws(f"sqlite:///{secret_db}") as endpoint:
            common = {
                "PATH": "/usr/bin:/bin",
                "LOG_LEVEL": "WARNING",
                "AWS_DEFAULT_REGION": "us-east-1",
                "AWS_ACCESS_KEY_ID": "testing",
                "AWS_SECRET_ACCESS_KEY": "testing",
                "AWS_EC2_METADATA_DISABLED": "true",
            }
            configurations = {
                "default": {},
                "s3 snapshot": {"DB_SNAPSHOT_S3_URI": "s3://users-api-bench/users.db", "AWS_ENDPOINT_URL_S3": endpoint},
                "secrets manager": {"DATABASE_SECRET_ARN": SECRET_ARN, "AWS_ENDPOINT_URL_SECRETS_MANAGER": endpoint},
            }
            cold: dict[str, list[float]] = {name: [] for name in configurations}
            boto3_alone: list[float] = []
            steps: dict[str, list[float]] = {}
            for round_number in range(args.rounds):  # interleaved: every case once per round
                for name, extra in configurations.items():
                    # A fresh /tmp per run: every cold start copies or downloads its database.
                    env = {**common, "SQLITE_COPY_PATH": f"{tmp}/{name}-{round_number}/users.db", **extra}
                    cold[name].append(_importtime("import handler", "handler", env))
                boto3_alone.append(_importtime("import boto3", "boto3", common))
                env = {**common, "SQLITE_COPY_PATH": f"{tmp}/steps-{round_number}/users.db"}
                probe = subprocess.run(
                    [sys.executable, "-c", _STEPS_PROBE], env=env, cwd=ROOT, capture_output=True, text=True, check=True
                )
                for step, seconds in json.loads(probe.stdout.splitlines()[-1]).items():
                    steps.setdefault(step, []).append(seconds * 1000)

    baseline = statistics.median(cold["default"])
    header = f"{'':<28}{'median':>9}{'min':>9}{'max':>9}{'vs default':>11}"
    print(f"python {sys.version.split()[0]}, {args.rounds} interleaved rounds, ms")
    print('cold start: cumulative `import handler` (python -X importtime -c "import handler")')
    print(header)
    for name, values in cold.items():
        print(_summary(name, values, baseline))
    print(_summary("import boto3 alone", boto3_alone, baseline))
    print("steps in one interpreter (time.perf_counter)")
    print(header)
    for step, values in steps.items():
        print(_summary(step, values, statistics.median(steps["import handler (default)"])))


if __name__ == "__main__":
    main()
