"""Cold start of the deployment zip as Lambda runs it: spawn to first response (`make bench-artifact`).

    python -m bench.artifact_cold --artifact .serverless/users-api.zip [--rounds 15]

The zip is unzipped once, and each variant is a tree of its own:
- as shipped: the zip's contents, bytecode included;
- fully precompiled: the same tree after `compileall` rewrote every module's bytecode in
  Python's default mode, once unzipped (the best case: every module cached and valid);
- no bytecode: the same tree without any `__pycache__` (what `osls package` built before #12);
- reference: the bare interpreter (`-S`) reading the event and answering: any cold start's floor.

Every start is a fresh process of the runtime's Python with `-S`, PYTHONDONTWRITEBYTECODE=1,
the tree as working directory (so only the zip's contents and the standard library are on
sys.path) and an empty /tmp copy path (a new container copies the bundled database). The clock
runs from just before the spawn to the response's line on the child's stdout. Each round runs
every variant once, in an order rotated each round; medians and ratios are printed, with the
median of the per-round ratio as shipped / fully precompiled.
"""

from __future__ import annotations

import argparse
import compileall
import json
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.workload import REPO_ROOT

__all__ = ["RESPONSE_MARKER", "TARGET_RATIO", "Variant", "main", "measure", "prepare_variants", "render"]

DEFAULT_ARTIFACT: Path = REPO_ROOT / ".serverless" / "users-api.zip"
EVENT_PATH: Path = REPO_ROOT / "events" / "http-api-v2.json"
# Issue #12's target: the zip as shipped within 5% of the same zip with every module precompiled.
TARGET_RATIO: float = 1.05
# Prefix of the child's response line (the handler logs JSON lines to stdout before it).
RESPONSE_MARKER: str = "@@response "

_HANDLER_CHILD = f"""
import json, sys
class Context:
    aws_request_id = "artifact-cold-start"
    function_name = "users-api-bench"
    def get_remaining_time_in_millis(self):
        return 10_000
with open(sys.argv[1], encoding="utf-8") as event_file:
    event = json.load(event_file)
import handler
response = handler.handler(event, Context())
sys.stdout.write({RESPONSE_MARKER!r} + json.dumps(response) + "\\n")
sys.stdout.flush()
"""
_REFERENCE_CHILD = f"""
import json, sys
with open(sys.argv[1], encoding="utf-8") as event_file:
    event = json.load(event_file)
sys.stdout.write({RESPONSE_MARKER!r} + json.dumps({{"statusCode": 200, "body": ""}}) + "\\n")
sys.stdout.flush()
"""


@dataclass(frozen=True)
class Variant:
    """One way to start: a working directory and the child script run there."""

    key: str
    label: str
    tree: Path
    script: str
    serves_users: bool = True


def runtime_python() -> Path:
    """The interpreter behind this venv, which must be the runtime's (`.python-version`)."""
    wanted = (REPO_ROOT / ".python-version").read_text(encoding="utf-8").strip()
    found = f"{sys.version_info.major}.{sys.version_info.minor}"
    if found != wanted:
        raise SystemExit(f"bench.artifact_cold: run it with Python {wanted} (the Lambda runtime's), not {found}")
    return Path(sys.base_prefix) / "bin" / f"python{wanted}"


def prepare_variants(artifact: Path, workdir: Path) -> list[Variant]:
    """Unzip `artifact` into one tree per variant under `workdir`."""
    shipped = workdir / "shipped"
    with zipfile.ZipFile(artifact) as archive:
        archive.extractall(shipped)
    if not any(shipped.rglob("__pycache__/*.pyc")):
        print(f"note: {artifact} ships no bytecode; 'as shipped' is the no-bytecode case", file=sys.stderr)
    precompiled = workdir / "precompiled"
    shutil.copytree(shipped, precompiled)
    # Timestamp mode, after unzipping: the source times are real now, so every .pyc is valid.
    if not compileall.compile_dir(precompiled, force=True, quiet=1, optimize=0, workers=0):
        raise SystemExit(f"bench.artifact_cold: some sources in {artifact} do not compile")
    no_bytecode = workdir / "no-bytecode"
    shutil.copytree(shipped, no_bytecode, ignore=shutil.ignore_patterns("__pycache__"))
    reference = workdir / "reference"
    reference.mkdir()
    return [
        Variant("shipped", "as shipped", shipped, _HANDLER_CHILD),
        Variant("precompiled", "fully precompiled", precompiled, _HANDLER_CHILD),
        Variant("no-bytecode", "no bytecode (the zip before #12)", no_bytecode, _HANDLER_CHILD),
        Variant(
            "reference", "reference: bare `python -S`, same event", reference, _REFERENCE_CHILD, serves_users=False
        ),
    ]


def _start(python: Path, variant: Variant, copy_path: Path) -> tuple[float, dict[str, object]]:
    """One cold start: milliseconds from spawn to the response line, and the response."""
    environ = {
        "PATH": "/usr/bin:/bin",
        "LANG": "en_US.UTF-8",
        "PYTHONDONTWRITEBYTECODE": "1",
        "LAMBDA_TASK_ROOT": str(variant.tree),
        "SQLITE_COPY_PATH": str(copy_path),
    }
    started = time.perf_counter()
    with subprocess.Popen(
        [str(python), "-S", "-c", variant.script, str(EVENT_PATH)],
        cwd=variant.tree,
        env=environ,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        for line in child.stdout:
            if line.startswith(RESPONSE_MARKER):
                elapsed_ms = (time.perf_counter() - started) * 1000
                response: dict[str, object] = json.loads(line.removeprefix(RESPONSE_MARKER))
                break
        else:
            raise SystemExit(f"bench.artifact_cold: {variant.key} exited with {child.wait()} before answering")
        child.stdout.read()
    if response.get("statusCode") != 200:
        raise SystemExit(f"bench.artifact_cold: {variant.key} answered {response.get('statusCode')}")
    return elapsed_ms, response


def measure(python: Path, variants: Sequence[Variant], rounds: int, workdir: Path) -> dict[str, list[float]]:
    """`rounds` interleaved cold starts of each variant (after one untimed round); milliseconds."""
    times: dict[str, list[float]] = {variant.key: [] for variant in variants}
    bodies: set[object] = set()
    for round_number in range(-1, rounds):
        shift = max(round_number, 0) % len(variants)
        for variant in [*variants[shift:], *variants[:shift]]:
            copy_path = workdir / "tmp" / f"{variant.key}-{round_number}" / "users.db"
            elapsed_ms, response = _start(python, variant, copy_path)
            if variant.serves_users:
                bodies.add(response.get("body"))
            if round_number >= 0:
                times[variant.key].append(elapsed_ms)
    if len(bodies) != 1:
        raise SystemExit(f"bench.artifact_cold: the artifact variants answered different bodies: {bodies}")
    return times


def render(variants: Sequence[Variant], times: dict[str, list[float]]) -> str:
    """The table: median, min and max per variant, and ratios to the fully precompiled tree."""
    precompiled = statistics.median(times["precompiled"])
    lines = [
        "| variant | median ms | min ms | max ms | x fully precompiled |",
        "| --- | ---: | ---: | ---: | ---: |",
    ]
    for variant in variants:
        samples = times[variant.key]
        median = statistics.median(samples)
        lines.append(
            f"| {variant.label} | {median:.1f} | {min(samples):.1f} | {max(samples):.1f} | {median / precompiled:.2f} |"
        )
    paired = [shipped / best for shipped, best in zip(times["shipped"], times["precompiled"], strict=True)]
    paired_median = statistics.median(paired)
    verdict = "met" if paired_median <= TARGET_RATIO else "NOT met"
    lines += [
        "",
        f"as shipped / fully precompiled, per round: median {paired_median:.3f}x "
        f"(min {min(paired):.3f}, max {max(paired):.3f}); target <= {TARGET_RATIO}x: {verdict}",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--artifact", type=Path, default=DEFAULT_ARTIFACT, help="the zip `osls package` wrote")
    parser.add_argument("--rounds", type=int, default=15, help="timed rounds (default 15)")
    args = parser.parse_args(argv)
    if not args.artifact.is_file():
        parser.error(f"no artifact at {args.artifact}: run `make package` first")
    python = runtime_python()
    with tempfile.TemporaryDirectory(prefix="users-api-artifact-cold-") as workdir_name:
        workdir = Path(workdir_name)
        variants = prepare_variants(args.artifact, workdir)
        times = measure(python, variants, args.rounds, workdir)
    print(
        f"Cold start of {args.artifact.name} ({args.artifact.stat().st_size / 1e6:.1f} MB), spawn to first response; "
        f"{args.rounds} interleaved rounds; Python {platform.python_version()}, {os.cpu_count()} CPUs"
    )
    print()
    print(render(variants, times))
    return 0


if __name__ == "__main__":
    sys.exit(main())
