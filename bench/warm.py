"""Warm invocation cost, run in its own interpreter (`python -m bench.warm SUITE --out FILE`).

Suites:
  variants  every warm variant on a 100-user database, interleaved; bodies checked equal first
  gc        handler.handler with the cyclic GC as is, with init objects frozen, and switched off
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

from app.config import Settings
from app.storage import DATABASE_KEY
from bench.timing import check_same_body, run_interleaved, summarise
from bench.variants import FloorHandler, Variant, import_handler, warm_variants
from bench.workload import FakeContext, load_users_event

__all__ = ["main"]


def _gc_variants(serve: Any) -> list[Variant]:
    def enable() -> None:
        gc.enable()

    def disable() -> None:
        gc.freeze()
        gc.disable()

    return [
        Variant("gc_unfrozen", "cyclic GC on, init objects not frozen", serve, activate=gc.unfreeze),
        Variant("gc_frozen", "cyclic GC on, gc.freeze() after init", serve, activate=gc.freeze),
        Variant("gc_off", "cyclic GC off (lower bound)", serve, activate=disable, deactivate=enable),
    ]


def run(suite: str, rows: int, rounds: int, calls: int, warmup: int) -> dict[str, Any]:
    """Import the handler on a `rows`-user database and time the suite's variants."""
    with tempfile.TemporaryDirectory(prefix="users-api-bench-") as workdir:
        module = import_handler(Path(workdir), rows)
        frozen_at_init = gc.get_freeze_count()
        event, context = load_users_event(), FakeContext()
        etag = module.handler(load_users_event(), context)["multiValueHeaders"]["ETag"][0]
        floor = FloorHandler(Settings.from_env().sqlite_copy_path, etag=etag)
        variants = warm_variants(module, floor) if suite == "variants" else _gc_variants(module.handler)
        body = check_same_body([Variant("floor", "floor", floor), *variants], event, context)
        samples = run_interleaved(variants, event, context, rounds=rounds, calls=calls, warmup=warmup)
        module.app.extensions[DATABASE_KEY].dispose()
    return {
        "suite": suite,
        "rows": rows,
        "body_bytes": len(body.encode("utf-8")),
        "frozen_at_init": frozen_at_init,
        "results": {
            variant.key: {"label": variant.label, **asdict(summarise(samples[variant.key]))} for variant in variants
        },
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("suite", choices=["variants", "gc"])
    parser.add_argument("--rows", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=100, help="calls per batch")
    parser.add_argument("--warmup", type=int, default=200, help="untimed calls per variant first")
    parser.add_argument("--out", type=Path, required=True, help="JSON results file")
    args = parser.parse_args(argv)
    # The handler logs a JSON line per invocation; a real file keeps the write + flush per line.
    sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - lives as long as the process
    result = run(args.suite, args.rows, args.rounds, args.calls, args.warmup)
    args.out.write_text(json.dumps(result, indent=2), encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
