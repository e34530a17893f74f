"""The Serverless Framework CLI (osls) flows: `invoke local` and `offline` (`package`: tests/deploy/test_artifact.py).

These run the real CLI from node_modules (installed by `make test` when npm is present) with
dummy AWS credentials and the EC2 metadata probe disabled: nothing here may reach AWS.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.config import Settings
from tests.support import ROOT
from tests.support.payloads import SAMPLE_EVENTS_DIR
from tests.support.serverless_cli import CLI_TIMEOUT_SECONDS, OSLS, cli_env, needs_cli
from tests.support.tables import SEED_NAMES


def parse_invoke_output(stdout: str) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Split `invoke local` output into the handler's JSON log lines and the response.

    osls prints the handler's output, then the response as indented JSON; blank lines fall
    wherever its pipe reads split, so the response starts at the last line that is just "{".
    """
    lines = stdout.splitlines()
    start = max(i for i, line in enumerate(lines) if line == "{")
    logs = [json.loads(line) for line in lines[:start] if line.startswith("{")]
    return logs, json.loads("\n".join(lines[start:]))


def invoke_local(
    tmp_path: Path, *arguments: str, extra_env: Mapping[str, str] | None = None
) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """Run `osls invoke local -f api ARGUMENTS` (stdin closed) and parse what it printed."""
    result = subprocess.run(
        [str(OSLS), "invoke", "local", "--function", "api", *arguments],
        cwd=ROOT,
        env=cli_env(tmp_path) | dict(extra_env or {}),
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return parse_invoke_output(result.stdout)


# Set per stage with `params` (or --param): the names of secrets, never their values.
STAGE_PARAMS = {"DATABASE_SECRET_ARN": "databaseSecretArn", "DATABASE_URL_SSM_PARAMETER": "databaseUrlSsmParameter"}
# Never in the template: it would carry the password in plain text (docs/deploy.md).
NOT_DEPLOYED = {"DATABASE_URL"}


def test_serverless_yml_environment_mirrors_settings() -> None:
    config = yaml.safe_load((ROOT / "serverless.yml").read_text(encoding="utf-8"))
    environment: dict[str, str] = config["provider"]["environment"]
    # Empty fallbacks: the defaults live in Settings alone.
    env_pattern = re.compile(r"^\$\{env:(?P<name>[A-Z0-9_]+), ''\}$")

    defaults = {}
    for name, value in environment.items():
        if name in STAGE_PARAMS:
            assert value == f"${{param:{STAGE_PARAMS[name]}}}"
            defaults[name] = config["params"]["default"][STAGE_PARAMS[name]]
            continue
        match = env_pattern.match(value)
        assert match, f"{name}: {value!r} is not ${{env:{name}, ''}}"
        assert match["name"] == name
        defaults[name] = ""

    assert Settings.from_env(defaults) == Settings.from_env({})
    settings_source = (ROOT / "app" / "config.py").read_text(encoding="utf-8")
    settings_names = set(re.findall(r'reader\.\w+\(\s*"([A-Z0-9_]+)"', settings_source))
    assert sorted(defaults) == sorted(settings_names - NOT_DEPLOYED)
    assert settings_names >= NOT_DEPLOYED
    assert not re.search(r"\$\{\w+:DATABASE_URL\b", (ROOT / "serverless.yml").read_text(encoding="utf-8"))


@needs_cli
@pytest.mark.parametrize("sample", sorted(path.stem for path in SAMPLE_EVENTS_DIR.glob("*.json")))
def test_invoke_local_serves_sample_event(sample: str, tmp_path: Path) -> None:
    logs, response = invoke_local(tmp_path, "--path", f"events/{sample}.json")

    assert response["statusCode"] == 200
    assert response["body"] == SEED_NAMES
    invocation = next(line for line in logs if line["message"] == "invocation")
    assert (invocation["cold_start"], invocation["status"], invocation["path"]) == (True, 200, "/users")


@needs_cli
def test_invoke_local_without_event_answers_400(tmp_path: Path) -> None:
    # No --path: osls passes {} (it would read stdin if it were not closed).
    _, response = invoke_local(tmp_path)

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "unsupported_event"


@needs_cli
def test_invoke_local_reads_the_shells_database_url(tmp_path: Path) -> None:
    # The documented way to point the local flows at another database: DATABASE_URL is not in
    # serverless.yml (so never deployed), and osls passes the shell's environment through.
    local_db = tmp_path / "local.db"
    with contextlib.closing(sqlite3.connect(local_db)) as connection, connection:
        connection.executescript((ROOT / "data" / "schema.sql").read_text(encoding="utf-8"))
        connection.executemany("INSERT INTO users (id, name) VALUES (?, ?)", [(1, "Local"), (2, "Only")])

    logs, response = invoke_local(
        tmp_path, "--path", "events/http-api-v2.json", extra_env={"DATABASE_URL": f"sqlite:///{local_db}"}
    )

    assert (response["statusCode"], response["body"]) == (200, "Local,Only")
    initialised = next(line for line in logs if line["message"] == "app initialised")
    assert initialised["database"] == f"sqlite:///{local_db}"


@needs_cli
def test_invoke_local_bad_setting_is_one_line_without_python_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [str(OSLS), "invoke", "local", "--function", "api", "--path", "events/http-api-v2.json"],
        cwd=ROOT,
        env=cli_env(tmp_path) | {"DATABASE_URL": "mysql://app:Hunter2Secret@db/users"},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )

    output = result.stdout + result.stderr
    assert result.returncode != 0
    # The handler's one line; osls then reports the failed child process its own way.
    assert [line for line in output.splitlines() if "DATABASE_URL" in line] == [
        "users-api: DATABASE_URL uses the unsupported dialect 'mysql'; write "
        "postgresql+psycopg://user:password@host:5432/db (or postgres://...) or sqlite:///path/users.db"
    ]
    assert "Traceback" not in output
    assert "Hunter2Secret" not in output


@needs_cli
@pytest.mark.skipif(shutil.which("make") is None, reason="make not installed")
@pytest.mark.parametrize(
    ("environ", "line"),
    [
        pytest.param(
            {"DATABASE_URL": "mysql://app:Hunter2Secret@db/users"},
            "users-api: DATABASE_URL uses the unsupported dialect 'mysql'; write "
            "postgresql+psycopg://user:password@host:5432/db (or postgres://...) or sqlite:///path/users.db",
            id="unsupported-dialect",
        ),
        pytest.param(
            {"SQLITE_COPY_PATH": "{tmp}/a-file/users.db"},
            "users-api: SQLITE_COPY_PATH '{tmp}/a-file/users.db' cannot be written (File exists): "
            "set it to a file in a writable directory (on Lambda, under /tmp)",
            id="copy-path-unwritable",
        ),
    ],
)
def test_make_invoke_bad_setting_is_all_the_user_sees(environ: dict[str, str], line: str, tmp_path: Path) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = cli_env(tmp_path) | {name: value.replace("{tmp}", str(tmp_path)) for name, value in environ.items()}
    # As a user runs it, at the top level (under `make test` it would say "make[1]").
    for name in ("MAKELEVEL", "MAKEFLAGS", "MFLAGS"):
        env.pop(name, None)
    result = subprocess.run(
        ["make", "--no-print-directory", "invoke", "EVENT=events/http-api-v2.json"],
        cwd=ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=CLI_TIMEOUT_SECONDS,
        check=False,
    )

    # The one line, then make's own note of the failed recipe; no stack trace of any kind.
    assert result.returncode != 0
    assert result.stdout == ""
    lines = result.stderr.splitlines()
    assert lines[0] == line.replace("{tmp}", str(tmp_path))
    assert len(lines) == 2 and lines[1].startswith("make: *** "), result.stderr
    assert "Hunter2Secret" not in result.stderr


@needs_cli
def test_invoke_local_sample_in_docs_is_what_it_prints(tmp_path: Path) -> None:
    # Issue 18: docs/serverless-cli.md's sample response lacked Vary (and ETag came later).
    text = (ROOT / "docs" / "serverless-cli.md").read_text(encoding="utf-8")
    sample = text.split("$ npx osls invoke local -f api --path events/http-api-v2.json\n", 1)[1].split("```", 1)[0]
    documented = json.loads(sample[sample.index("\n{\n") :])  # the response, after the log lines

    _, response = invoke_local(tmp_path, "--path", "events/http-api-v2.json")

    assert response == documented


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@dataclass
class HttpResult:
    status: int
    headers: dict[str, str]
    body: bytes


def http_request(url: str, method: str = "GET") -> HttpResult:
    request = urllib.request.Request(url, method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return HttpResult(response.status, {k.lower(): v for k, v in response.headers.items()}, response.read())
    except urllib.error.HTTPError as error:
        return HttpResult(error.code, {k.lower(): v for k, v in error.headers.items()}, error.read())


@dataclass
class Offline:
    base_url: str
    log_path: Path
    process: subprocess.Popen[bytes]

    def log_lines(self) -> list[dict[str, Any]]:
        lines = []
        for line in self.log_path.read_text(encoding="utf-8", errors="replace").splitlines():
            start = line.find('{"time"')
            if start != -1:
                lines.append(json.loads(line[start:]))
        return lines


@pytest.fixture(scope="module")
def offline(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Offline]:
    if shutil.which("node") is None or not OSLS.exists():
        pytest.skip("Serverless CLI not installed: needs node and npm (`make test` runs `npm ci` when npm is on PATH)")
    tmp_path = tmp_path_factory.mktemp("offline")
    http_port, lambda_port = free_port(), free_port()
    log_path = tmp_path / "offline.log"
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(
            [
                str(OSLS),
                "offline",
                "--host",
                "127.0.0.1",
                "--httpPort",
                str(http_port),
                "--lambdaPort",
                str(lambda_port),
            ],
            cwd=ROOT,
            env=cli_env(tmp_path),
            stdin=subprocess.DEVNULL,
            stdout=log_file,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopping it stops the python workers too
        )
    try:
        deadline = time.monotonic() + CLI_TIMEOUT_SECONDS
        while "Server ready:" not in log_path.read_text(encoding="utf-8", errors="replace"):
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail("serverless offline did not start:\n" + log_path.read_text(errors="replace"))
            time.sleep(0.1)
        yield Offline(f"http://127.0.0.1:{http_port}", log_path, process)
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


@needs_cli
def test_offline_serves_rest_and_http_api_routes_from_one_warm_process(offline: Offline) -> None:
    rest = http_request(offline.base_url + "/dev/users")
    http_api = http_request(offline.base_url + "/users")
    not_found = http_request(offline.base_url + "/dev/nope")
    http_api_not_found = http_request(offline.base_url + "/nope")
    wrong_method = http_request(offline.base_url + "/dev/users", method="DELETE")
    http_api_wrong_method = http_request(offline.base_url + "/users", method="POST")
    head = http_request(offline.base_url + "/users", method="HEAD")

    for ok in (rest, http_api):
        assert (ok.status, ok.body) == (200, SEED_NAMES.encode())
        assert ok.headers["content-type"] == "text/plain; charset=utf-8"
    for missing in (not_found, http_api_not_found):
        assert missing.status == 404
        assert missing.headers["content-type"].startswith("application/json")  # offline adds a charset
        assert json.loads(missing.body)["error"] == "not_found"
    for refused in (wrong_method, http_api_wrong_method):
        assert refused.status == 405
        assert sorted(refused.headers["allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]
        assert json.loads(refused.body)["error"] == "method_not_allowed"
    assert (head.status, head.body) == (200, b"")

    logs = offline.log_lines()
    invocations = [line for line in logs if line["message"] == "invocation"]
    assert [(line["method"], line["status"]) for line in invocations] == [
        ("GET", 200),
        ("GET", 200),
        ("GET", 404),
        ("GET", 404),
        ("DELETE", 405),
        ("POST", 405),
        ("HEAD", 200),
    ]
    assert [line["source"] for line in invocations[:2]] == ["apigw-rest", "apigw-http"]
    # One python process served them all: one init, one cold start, then warm invocations.
    assert [line["message"] for line in logs].count("app initialised") == 1
    assert [line["cold_start"] for line in invocations] == [True] + [False] * 6


@needs_cli
def test_offline_rest_link_stays_under_the_stage(offline: Offline) -> None:
    # Runs after the test above, which counts that module's invocations exactly.
    first = http_request(offline.base_url + "/dev/users?limit=2")
    link = first.headers["link"]
    assert link.startswith("</dev/users?after=") and link.endswith('>; rel="next"')

    second = http_request(offline.base_url + link[1 : link.index(">")])

    assert (first.status, first.body, second.status, second.body) == (200, b"Alice,Bob", 200, b"Carol,Dave")
