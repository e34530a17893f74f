"""Where the warm time goes: cProfile over warm invocations of `handler.handler`.

Run in its own interpreter (`python -m bench.hotspots --out FILE`). Prints the top functions
by own time and a split by package. cProfile roughly doubles the cost of small Python calls,
so the shares are what to read here, not the absolute times (those come from bench.warm).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import sys
import sysconfig
import tempfile
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from app.storage import DATABASE_KEY
from bench.variants import import_handler
from bench.workload import REPO_ROOT, FakeContext, load_users_event

__all__ = ["main", "package_of"]

_SITE_PACKAGES: str = sysconfig.get_paths()["purelib"]
_STDLIB: str = sysconfig.get_paths()["stdlib"]
_SITE_PACKAGE_NAMES: dict[str, str] = {"serverless_wsgi.py": "serverless_wsgi"}


def package_of(filename: str, repo_root: Path = REPO_ROOT) -> str:
    """Who owns the code at `filename`: 'ours' (this repo), a site-packages distribution, 'stdlib' or 'C builtins'."""
    if filename == "~" or filename.startswith("<"):
        return "C builtins"
    path = Path(filename)
    if path.is_relative_to(_SITE_PACKAGES):
        top = path.relative_to(_SITE_PACKAGES).parts[0]
        return _SITE_PACKAGE_NAMES.get(top, top)
    if path.is_relative_to(repo_root):
        return "ours"
    if path.is_relative_to(_STDLIB):
        return "stdlib: " + path.relative_to(_STDLIB).parts[0].removesuffix(".py")
    return "other"


def profile(calls: int, top: int) -> dict[str, Any]:
    """Profile `calls` warm invocations on a 100-user database: top functions and time per package."""
    with tempfile.TemporaryDirectory(prefix="users-api-bench-") as workdir:
        module = import_handler(Path(workdir), 100)
        event, context = load_users_event(), FakeContext()
        for _ in range(200):
            module.handler(event, context)
        profiler = cProfile.Profile()
        profiler.enable()
        for _ in range(calls):
            module.handler(event, context)
        profiler.disable()
        module.app.extensions[DATABASE_KEY].dispose()

    stats = pstats.Stats(profiler)
    entries: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = stats.stats  # type: ignore[attr-defined]
    total = sum(own for _, _, own, _, _ in entries.values())
    by_package: defaultdict[str, float] = defaultdict(float)
    for (filename, _, _), (_, _, own, _, _) in entries.items():
        by_package[package_of(filename)] += own
    ranked = sorted(entries.items(), key=lambda item: item[1][2], reverse=True)[:top]
    return {
        "calls": calls,
        "total_own_s": total,
        "packages": sorted(
            (
                {"package": name, "share": own / total, "us_per_call": own / calls * 1e6}
                for name, own in by_package.items()
            ),
            key=lambda row: -float(row["share"]),
        ),
        "functions": [
            {
                "function": _describe(filename, line, name),
                "package": package_of(filename),
                "ncalls": ncalls,
                "own_us_per_invocation": own / calls * 1e6,
                "cumulative_us_per_invocation": cumulative / calls * 1e6,
            }
            for (filename, line, name), (_, ncalls, own, cumulative, _) in ranked
        ],
    }


def _describe(filename: str, line: int, name: str) -> str:
    if filename == "~":
        return name
    path = Path(filename)
    for root in (Path(_SITE_PACKAGES), REPO_ROOT, Path(_STDLIB)):
        if path.is_relative_to(root):
            return f"{path.relative_to(root)}:{line}({name})"
    return f"{filename}:{line}({name})"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--top", type=int, default=15)
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    args = parser.parse_args(argv)
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - the handler's log lines; lives as long as the process
    result = profile(args.calls, args.top)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
