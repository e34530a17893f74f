"""Cold start: fresh interpreters importing a handler and serving its first request; import-time
offenders (`python -X importtime`); and the cost of copying bundled databases to /tmp.
"""

from __future__ import annotations

import filecmp
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.storage.bundle import ensure_local_copy
from bench.workload import REPO_ROOT, USERS_EVENT_PATH, build_filler_db, build_users_db, handler_environ

__all__ = [
    "COLD_TARGETS",
    "COPY_FUNCTION_NAME",
    "CUMULATIVE_OF",
    "ImportLine",
    "cold_starts",
    "copy_costs",
    "import_offenders",
    "parse_importtime",
]

# Module imported by the fresh interpreter -> what it stands for.
COLD_TARGETS: dict[str, str] = {
    "handler": "handler (this project)",
    "bench.cold_targets.reference": "reference: Flask + SQLAlchemy + serverless-wsgi, same query and copy",
    "bench.cold_targets.hello": "reference: bare Flask + serverless-wsgi 'hello'",
}
# What the copy costs measure, named from the function itself so RESULTS.md follows it if it moves.
COPY_FUNCTION_NAME: str = f"{ensure_local_copy.__module__}.{ensure_local_copy.__qualname__}"
# Packages whose whole import (their own modules and what they pull in first) is reported.
CUMULATIVE_OF: tuple[str, ...] = ("sqlalchemy", "serverless_wsgi", "flask", "app")
_CHILD: Path = Path(__file__).resolve().parent / "cold_child.py"


def _child_environ(bundle: Path, copy_path: Path) -> dict[str, str]:
    environ = handler_environ(bundle, copy_path)
    environ["PYTHONPATH"] = str(REPO_ROOT)
    environ.pop("PYTHONDONTWRITEBYTECODE", None)
    return environ


def _cold_start(module: str, bundle: Path, copy_path: Path, result_path: Path) -> dict[str, Any]:
    started = time.perf_counter()
    subprocess.run(
        [sys.executable, str(_CHILD), module, str(USERS_EVENT_PATH), str(result_path)],
        env=_child_environ(bundle, copy_path),
        cwd=REPO_ROOT,
        check=True,
        stdout=subprocess.DEVNULL,
    )
    process_ms = (time.perf_counter() - started) * 1000
    result: dict[str, Any] = json.loads(result_path.read_text(encoding="utf-8"))
    result["process_ms"] = process_ms
    result["total_ms"] = result["import_ms"] + result["first_request_ms"]
    return result


def cold_starts(modules: Sequence[str], runs: int) -> dict[str, list[dict[str, Any]]]:
    """`runs` cold starts of each module, interleaved, each with an empty /tmp copy path (a new container).

    One untimed start of each first writes the bytecode caches, as a deployment package ships them.
    """
    results: dict[str, list[dict[str, Any]]] = {module: [] for module in modules}
    with tempfile.TemporaryDirectory(prefix="users-api-cold-") as workdir_name:
        workdir = Path(workdir_name)
        bundle = build_users_db(workdir / "bundle.db", 100)
        for run in range(-1, runs):
            shift = max(run, 0) % len(modules)
            for module in [*modules[shift:], *modules[:shift]]:
                copy_path = workdir / f"tmp-{module}-{run}" / "users.db"
                result = _cold_start(module, bundle, copy_path, workdir / "result.json")
                if result["status"] != 200:
                    raise AssertionError(f"{module}: first request answered {result['status']}")
                if run >= 0:
                    results[module].append(result)
    bodies = {module: {result.pop("body") for result in runs_of} for module, runs_of in results.items()}
    reference = "bench.cold_targets.reference"
    if "handler" in bodies and reference in bodies and bodies["handler"] != bodies[reference]:
        raise AssertionError("the handler and the reference served different bodies")
    return results


@dataclass(frozen=True)
class ImportLine:
    """One line of `python -X importtime` output."""

    module: str
    self_us: int
    cumulative_us: int
    depth: int


def parse_importtime(stderr: str) -> list[ImportLine]:
    """The import lines of `-X importtime` output (its header and any other stderr lines skipped)."""
    lines = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        self_us, cumulative_us, name = line.removeprefix("import time:").split("|", 2)
        if not self_us.strip().isdigit():
            continue  # the header: "self [us] | cumulative | imported package"
        stripped = name.lstrip(" ")
        depth = (len(name) - len(stripped) - 1) // 2
        lines.append(ImportLine(stripped, int(self_us), int(cumulative_us), depth))
    return lines


def _by_package(lines: Iterable[ImportLine]) -> dict[str, int]:
    totals: defaultdict[str, int] = defaultdict(int)
    for line in lines:
        totals[line.module.split(".")[0]] += line.self_us
    return dict(totals)


def import_offenders(runs: int, top: int) -> dict[str, Any]:
    """Median `-X importtime` self time of `import handler`, summed per top-level package, and the slowest modules."""
    packages: defaultdict[str, list[int]] = defaultdict(list)
    modules: defaultdict[str, list[int]] = defaultdict(list)
    cumulative: defaultdict[str, list[int]] = defaultdict(list)
    totals: list[int] = []
    with tempfile.TemporaryDirectory(prefix="users-api-importtime-") as workdir_name:
        workdir = Path(workdir_name)
        bundle = build_users_db(workdir / "bundle.db", 100)
        for run in range(runs):
            completed = subprocess.run(
                [sys.executable, "-X", "importtime", "-c", "import handler"],
                env=_child_environ(bundle, workdir / f"tmp-{run}" / "users.db"),
                cwd=REPO_ROOT,
                check=True,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.PIPE,
                text=True,
            )
            lines = parse_importtime(completed.stderr)
            handler_line = next(line for line in lines if line.module == "handler")
            totals.append(handler_line.cumulative_us)
            for name, self_us in _by_package(lines).items():
                packages[name].append(self_us)
            for line in lines:
                modules[line.module].append(line.self_us)
                if line.module in CUMULATIVE_OF:
                    cumulative[line.module].append(line.cumulative_us)

    def ranked(samples: dict[str, list[int]]) -> list[dict[str, Any]]:
        medians = {name: statistics.median(values) / 1000 for name, values in samples.items()}
        return [{"name": name, "ms": ms} for name, ms in sorted(medians.items(), key=lambda item: -item[1])[:top]]

    return {
        "import_handler_ms": statistics.median(totals) / 1000,
        "cumulative": {name: statistics.median(values) / 1000 for name, values in cumulative.items()},
        "packages": ranked(packages),
        "modules": ranked(modules),
    }


def _median_ms(action: Callable[[], None], repeats: int, prepare: Callable[[], None] = lambda: None) -> float:
    samples = []
    for _ in range(repeats):
        prepare()
        started = time.perf_counter()
        action()
        samples.append((time.perf_counter() - started) * 1000)
    return statistics.median(samples)


def copy_costs(sizes_mb: Sequence[int], repeats: int) -> list[dict[str, Any]]:
    """Median time of `ensure_local_copy` per bundle size: copying to an empty /tmp, and finding an identical copy."""
    results = []
    for size_mb in sizes_mb:
        with tempfile.TemporaryDirectory(prefix="users-api-copy-") as workdir_name:
            workdir = Path(workdir_name)
            bundle = build_filler_db(workdir / "bundle.db", size_mb)
            target = workdir / "tmp" / "users.db"

            def remove_copy(target: Path = target) -> None:
                target.unlink(missing_ok=True)

            def fresh_copy(bundle: Path = bundle, target: Path = target) -> None:
                if not ensure_local_copy(bundle, target):
                    raise AssertionError("expected a copy")

            # A cold start is a new process: filecmp's in-process cache of earlier answers is empty.
            def already_there(bundle: Path = bundle, target: Path = target) -> None:
                if ensure_local_copy(bundle, target):
                    raise AssertionError("expected no copy")

            results.append(
                {
                    "size_mb": os.path.getsize(bundle) / 1e6,
                    "copy_ms": _median_ms(fresh_copy, repeats, prepare=remove_copy),
                    "identical_ms": _median_ms(already_there, repeats, prepare=filecmp.clear_cache),
                }
            )
    return results
