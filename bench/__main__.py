"""Run every benchmark and write bench/RESULTS.md and bench/warm.png (`make bench`).

python -m bench                  # the full suite, about 2 minutes on 2 cores
python -m bench --quick          # a smoke run: few repetitions, figures too noisy to quote
python -m bench --save-baseline  # also record this run as bench/baseline.json ("before")
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path
from typing import Any

from bench.cold import COLD_TARGETS, cold_starts, copy_costs, import_offenders
from bench.report import draw_warm_chart, render_markdown, targets, where_the_time_goes
from bench.workload import REPO_ROOT

BENCH_DIR: Path = Path(__file__).resolve().parent
RESULTS_PATH: Path = BENCH_DIR / "RESULTS.md"
CHART_PATH: Path = BENCH_DIR / "warm.png"
BASELINE_PATH: Path = BENCH_DIR / "baseline.json"
VERSIONED: tuple[str, ...] = ("flask", "werkzeug", "sqlalchemy", "serverless-wsgi", "apig-wsgi")
# What the before/after table reads from the baseline (bench/report.py, _before_after). Nothing
# else is kept: a profile's file:line names and import lists would outlive the code they name.
BASELINE_SECTIONS: tuple[str, ...] = ("meta", "warm", "gc", "cold")


def _child(module: str, *args: str) -> dict[str, Any]:
    """Run `python -m module args... --out FILE` in a fresh interpreter and return its JSON."""
    with tempfile.TemporaryDirectory(prefix="users-api-bench-out-") as out_dir:
        out = Path(out_dir) / "result.json"
        environ = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        subprocess.run([sys.executable, "-m", module, *args, "--out", str(out)], cwd=REPO_ROOT, env=environ, check=True)
        result: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
        return result


def _combine_warm(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Per variant: the median of the runs' medians and of their p99s, and the spread of the medians."""
    combined = {}
    for key, first in runs[0]["results"].items():
        medians = [run["results"][key]["median_us"] for run in runs]
        combined[key] = {
            "label": first["label"],
            "median_us": statistics.median(medians),
            "p99_us": statistics.median(run["results"][key]["p99_us"] for run in runs),
            "spread": [min(medians), max(medians)],
        }
    return combined


def _summarise_cold(runs: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
    measures = ("import_ms", "first_request_ms", "total_ms", "gc_ms", "process_ms")
    return {
        module: {
            "label": COLD_TARGETS[module],
            **{m: statistics.median(run[m] for run in module_runs) for m in measures},
        }
        for module, module_runs in runs.items()
    }


def _git(*args: str) -> str:
    try:
        completed = subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True, check=True)
    except (OSError, subprocess.CalledProcessError):
        return "unknown"
    return completed.stdout.strip()


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as cpuinfo:
            for line in cpuinfo:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


def _step(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def run(quick: bool) -> dict[str, Any]:
    warm_runs, rounds, calls = (1, 3, 30) if quick else (3, 40, 100)
    cold_runs, importtime_runs = (2, 1) if quick else (20, 7)
    warm_args = ["variants", "--rounds", str(rounds), "--calls", str(calls)] + (["--warmup", "20"] if quick else [])
    dirty = bool(
        _git("status", "--porcelain", "--untracked-files=no", "--", ".", ":!bench/RESULTS.md", ":!bench/warm.png")
    )
    meta = {
        "command": "python -m bench" + (" --quick" if quick else ""),
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "commit": _git("rev-parse", "--short", "HEAD") + (" + uncommitted changes" if dirty else ""),
        "machine": f"{_cpu_model()}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}",
        "versions": {name: metadata.version(name) for name in VERSIONED},
        "load_before": _load(),
        "warm_runs": warm_runs,
        "warm_rounds": rounds,
        "warm_calls": calls,
        "cold_runs": cold_runs,
        "importtime_runs": importtime_runs,
    }
    results: dict[str, Any] = {"meta": meta, "gc": {}}
    # Warm runs are spread over the whole benchmark, so that a noisy minute touches one of them.
    _step(f"warm variants, run 1 of {warm_runs}")
    runs = [_child("bench.warm", *warm_args)]
    _step("profile of warm invocations")
    results["hotspots"] = _child("bench.hotspots", "--calls", "300" if quick else "2000")
    _step("cyclic GC at 100 and 100,000 rows")
    results["gc"]["100"] = _child("bench.warm", "gc", "--rows", "100", "--rounds", str(rounds), "--calls", str(calls))
    if warm_runs > 1:
        _step(f"warm variants, run 2 of {warm_runs}")
        runs.append(_child("bench.warm", *warm_args))
    big_rounds = "2" if quick else "10"
    results["gc"]["100000"] = _child(
        "bench.warm", "gc", "--rows", "100000", "--rounds", big_rounds, "--calls", "3", "--warmup", "2"
    )
    _step("cold starts")
    results["cold"] = _summarise_cold(cold_starts(list(COLD_TARGETS), cold_runs))
    _step("import times")
    results["imports"] = import_offenders(importtime_runs, top=10)
    _step("copying 1 MB and 100 MB bundles")
    results["copy"] = copy_costs([1, 100], repeats=3 if quick else 7)
    for number in range(3, warm_runs + 1):
        _step(f"warm variants, run {number} of {warm_runs}")
        runs.append(_child("bench.warm", *warm_args))
    results["warm"] = _combine_warm(runs)
    meta["load_after"] = _load()
    return results


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="few repetitions: checks the suite runs, nothing more")
    parser.add_argument("--save-baseline", action="store_true", help=f"also write {BASELINE_PATH.name}")
    parser.add_argument("--out-dir", type=Path, default=BENCH_DIR, help="where RESULTS.md and warm.png go")
    args = parser.parse_args(argv)

    started = time.perf_counter()
    results = run(args.quick)
    # The network bench needs a PostgreSQL server: its last figures (make bench-postgres-network) are kept.
    network_path = BENCH_DIR / "postgres_network.json"
    if network_path.exists():
        results["postgres_network"] = json.loads(network_path.read_text(encoding="utf-8"))
    # So are the gzip figures of `python -m bench.pagination` (~1 min on the 1M table).
    compression_path = BENCH_DIR / "compression.json"
    if compression_path.exists():
        results["compression"] = json.loads(compression_path.read_text(encoding="utf-8"))
    baseline = json.loads(BASELINE_PATH.read_text(encoding="utf-8")) if BASELINE_PATH.exists() else None
    markdown = render_markdown(results, baseline)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    (args.out_dir / RESULTS_PATH.name).write_text(markdown, encoding="utf-8")
    draw_warm_chart(results, args.out_dir / CHART_PATH.name)
    if args.save_baseline:
        recorded = {section: value for section, value in results.items() if section in BASELINE_SECTIONS}
        BASELINE_PATH.write_text(json.dumps(recorded, indent=2) + "\n", encoding="utf-8")

    print(markdown)
    for target in targets(results):
        print(f"{'MET    ' if target.met else 'NOT MET'}  {target.name}: {target.measured}")
    print("\nWhat limits the warm handler:")
    print("\n".join(where_the_time_goes(results["warm"])))
    print(
        f"\nWrote {args.out_dir / RESULTS_PATH.name} and {args.out_dir / CHART_PATH.name} "
        f"in {time.perf_counter() - started:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
