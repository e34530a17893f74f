"""GET /users on PostgreSQL across a network: 1 ms each way, against one psycopg query of the same rows.

    make bench-postgres-network   # or: .venv/bin/python -m bench.postgres_network [--rounds 20]

A loopback proxy (bench/net_proxy.py, in a process of its own; no root) delays every byte 1 ms each way in front of the
server at BENCH_POSTGRES_URL (the one `make bench-postgres` uses), like a VPC hop. Measured,
interleaved, through that proxy: the warm REST v1 GET of 100 users via `handler.handler`, and an
unlimited GET of a table whose page fills the 6 MB response limit; each against its floor, one
psycopg autocommit query of the same rows on a warm connection. Also counted: client-to-server
flights (round trips) per request. Writes the figures to bench/postgres_network.json and its
section of bench/RESULTS.md. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL, make_url

from app import create_app
from app.adapter import make_handler
from app.config import Settings
from bench.net_proxy import ProxyProcess
from bench.postgres_pool import ADMIN_URL, drop_database, prepare_database, psycopg_installed
from bench.report import postgres_network_section, replace_section
from bench.timing import summarise
from bench.workload import FakeContext, load_users_event

BENCH_DIR = Path(__file__).resolve().parent
JSON_PATH = BENCH_DIR / "postgres_network.json"
RESULTS_PATH = BENCH_DIR / "RESULTS.md"
DELAY_SECONDS = 0.001
# Rows of the big table: "user-000001"-style names, more than one 6 MB page holds.
BIG_ROWS = 600_000
WARM_TARGET = 1.5  # issue #17: warm GET <= 1.5x the floor


def _through(url: URL, proxy: ProxyProcess) -> URL:
    return url.set(host="127.0.0.1", port=proxy.port)


def _handler(url: URL) -> Callable[[dict[str, Any], Any], Any]:
    settings = replace(Settings.from_env(), database_url=url.render_as_string(hide_password=False), log_level="WARNING")
    return make_handler(create_app(settings))


def _floor(url: URL, rows: int) -> tuple[Callable[[], int], Callable[[], None]]:
    """One psycopg autocommit query of the first `rows` rows on a warm connection; and its closer."""
    import psycopg

    conn = psycopg.connect(
        host=url.host, port=url.port, user=url.username, dbname=url.database, autocommit=True, prepare_threshold=None
    )
    sql = f"SELECT id, name FROM users ORDER BY id LIMIT {int(rows)}"

    def query() -> int:
        return len(conn.execute(sql).fetchall())

    return query, conn.close


def _time(pairs: Sequence[tuple[str, Callable[[], object]]], rounds: int) -> dict[str, list[int]]:
    samples: dict[str, list[int]] = {name: [] for name, _ in pairs}
    for _, call in pairs:
        call()  # warm-up
    for round_index in range(rounds):
        shift = round_index % len(pairs)
        for name, call in [*pairs[shift:], *pairs[:shift]]:
            started = time.perf_counter_ns()
            call()
            samples[name].append(time.perf_counter_ns() - started)
    return samples


def _flights(proxy: ProxyProcess, call: Callable[[], object]) -> int:
    proxy.reset()
    call()
    return proxy.flights


def measure(admin_url: str, rounds: int) -> dict[str, Any]:
    small = prepare_database(admin_url)
    big = prepare_database(admin_url, BIG_ROWS)
    try:
        with ProxyProcess((small.host or "127.0.0.1", small.port or 5432), delay=DELAY_SECONDS) as proxy:
            event, context = load_users_event(), FakeContext()
            unlimited = {**event, "queryStringParameters": None, "multiValueQueryStringParameters": None}
            small_get, big_get = _handler(_through(small, proxy)), _handler(_through(big, proxy))
            first = big_get(unlimited, context)
            assert first["statusCode"] == 200, first
            page_rows = first["body"].count(",") + 1
            page_bytes = len(first["body"].encode())
            small_floor, close_small = _floor(_through(small, proxy), 100)
            big_floor, close_big = _floor(_through(big, proxy), page_rows)
            try:
                warm = _time(
                    [("warm_get", lambda: small_get(event, context)), ("warm_floor", small_floor)], rounds * 10
                )
                page = _time([("page_get", lambda: big_get(unlimited, context)), ("page_floor", big_floor)], rounds)
                flights = {
                    "warm_get": _flights(proxy, lambda: small_get(event, context)),
                    "warm_floor": _flights(proxy, small_floor),
                    "page_get": _flights(proxy, lambda: big_get(unlimited, context)),
                    "page_floor": _flights(proxy, big_floor),
                }
            finally:
                close_small()
                close_big()
        figures = {name: summarise(values) for name, values in {**warm, **page}.items()}
        return {
            "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
            "commit": _commit(),
            "delay_ms": DELAY_SECONDS * 1000,
            "rounds": rounds,
            "page_rows": page_rows,
            "page_bytes": page_bytes,
            "medians_ms": {name: summary.median_us / 1000 for name, summary in figures.items()},
            "p99_ms": {name: summary.p99_us / 1000 for name, summary in figures.items()},
            "flights": flights,
            "warm_target": WARM_TARGET,
        }
    finally:
        drop_database(admin_url, small)
        drop_database(admin_url, big)


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=20, help="rounds of the 6 MB page (warm GET: 10x as many)")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    args = parser.parse_args(argv)
    if not psycopg_installed():
        return 0
    try:
        results = measure(ADMIN_URL, args.rounds)
    except Exception as exc:
        if "connection" not in str(exc).lower():
            raise
        print(f"skipped: no PostgreSQL server at {make_url(ADMIN_URL).render_as_string()}: {str(exc).splitlines()[0]}")
        return 0
    section = postgres_network_section(results)
    print("\n".join(section))
    if not args.no_write:
        JSON_PATH.write_text(json.dumps(results, indent=2) + "\n", encoding="utf-8")
        RESULTS_PATH.write_text(replace_section(RESULTS_PATH.read_text(encoding="utf-8"), section), encoding="utf-8")
        print(f"\nWrote {JSON_PATH.name} and its section of {RESULTS_PATH.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
