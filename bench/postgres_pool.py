"""Warm GET /users on PostgreSQL: pooled engine vs NullPool vs an engine per request; and K containers.

    make bench-postgres        # or: .venv/bin/python -m bench.postgres_pool [--containers 8]

Needs the driver (requirements-postgres.txt) and a server at BENCH_POSTGRES_URL (default
postgres@127.0.0.1:5432, trust auth); says why and exits 0 without one. Every variant goes
through the real `handler.handler`, interleaved; medians and p99 in microseconds, ratios
against the pooled engine. Not a test: nothing here asserts a time.
"""

from __future__ import annotations

import argparse
import importlib
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import replace
from pathlib import Path
from types import ModuleType

from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url

from app import create_app
from app.adapter import make_handler
from app.config import Settings
from bench.timing import check_same_body, run_interleaved, summarise
from bench.variants import Variant, app_with_engine_per_request
from bench.workload import FakeContext, load_users_event

REPO_ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BENCH_DATABASE_PREFIX = "users_api_bench_"  # + a uuid: two runs on one server never share a database
USERS = 100

CONTAINER_SCRIPT = """
import sys
import handler
event = {"version": "2.0", "rawPath": "/users", "rawQueryString": "", "headers": {"host": "example.com"},
         "requestContext": {"http": {"method": "GET", "path": "/users"}, "stage": "$default"}}
class Context:
    aws_request_id = "container"
for _ in range(int(sys.argv[1])):
    assert handler.handler(event, Context())["statusCode"] == 200
print("served", flush=True)
sys.stdin.read()
"""


def psycopg_installed() -> bool:
    """Whether the PostgreSQL driver can be imported; says so when not (the benches then skip)."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        print("skipped: psycopg is not installed (pip install -r requirements-postgres.txt)")
        return False
    return True


def prepare_database(admin_url: str, users: int = USERS) -> URL:
    """A new database, named for this run, with `users` users named "user-000001" and so on;
    returns its URL (drop_database removes it)."""
    name = f"{BENCH_DATABASE_PREFIX}{uuid.uuid4().hex}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"CREATE DATABASE {name}"))
    finally:
        admin.dispose()
    url = make_url(admin_url).set(database=name)
    setup = create_engine(url)
    try:
        with setup.begin() as conn:
            conn.execute(text("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)"))
            conn.execute(
                text(
                    "INSERT INTO users (id, name) SELECT i, 'user-' || lpad(i::text, 6, '0') FROM generate_series(1, :n) i"
                ),
                {"n": users},
            )
    finally:
        setup.dispose()
    return url


def drop_database(admin_url: str, url: URL) -> None:
    """Drop the database prepare_database made (ending its sessions: ours, and any a crash left)."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {url.database} WITH (FORCE)"))
    finally:
        admin.dispose()


def import_handler(url: URL) -> ModuleType:
    os.environ["DATABASE_URL"] = url.render_as_string(hide_password=False)
    os.environ["LOG_LEVEL"] = "WARNING"  # the same for every variant; the log line is measured elsewhere
    return importlib.import_module("handler")


def warm_variants(module: ModuleType, url: URL) -> list[Variant]:
    settings = replace(Settings.from_env(), database_url=url.render_as_string(hide_password=False))
    return [
        Variant(
            "pooled",
            "handler.handler, pooled engine (QueuePool)",
            module.handler,
        ),
        Variant(
            "pooled_ping",
            "handler.handler, pooled, DB_POOL_PRE_PING=true",
            make_handler(create_app(replace(settings, pool_pre_ping=True))),
        ),
        Variant(
            "nullpool",
            "handler.handler, DB_POOL=null (NullPool)",
            make_handler(create_app(replace(settings, db_pool="null"))),
        ),
        Variant(
            "engine_per_request",
            "handler.handler, engine created per request",
            make_handler(app_with_engine_per_request(settings)),
        ),
    ]


def count_connections(admin_url: str, application_name: str) -> int:
    observer: Engine = create_engine(admin_url)
    try:
        with observer.connect() as conn:
            count: int = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE application_name = :name"), {"name": application_name}
            ).scalar_one()
            return count
    finally:
        observer.dispose()


@contextmanager
def warm_containers(url: URL, containers: int, requests: int) -> Iterator[str]:
    """Start `containers` handler processes, each serving `requests`, and keep them warm in the block.

    Yields the application_name their connections carry (unique to this call), to find them in
    pg_stat_activity; the processes exit when the block ends.
    """
    application_name = f"users-api-bench-{uuid.uuid4().hex[:12]}"
    database_url = url.update_query_dict({"application_name": application_name}).render_as_string(hide_password=False)
    env = {**os.environ, "DATABASE_URL": database_url, "LOG_LEVEL": "WARNING"}
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CONTAINER_SCRIPT, str(requests)],
            cwd=REPO_ROOT,
            env=env,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(containers)
    ]
    try:
        for process in processes:
            assert process.stdout is not None
            if process.stdout.readline().strip() != "served":
                raise RuntimeError("a container process failed to serve its requests")
        yield application_name
    finally:
        for process in processes:
            assert process.stdin is not None and process.stdout is not None
            process.stdin.close()
            process.wait(timeout=60)
            process.stdout.close()
    if any(process.returncode != 0 for process in processes):
        raise RuntimeError("a container process exited with an error")


def simulate_containers(url: URL, admin_url: str, containers: int, requests: int) -> int:
    """Start `containers` handler processes, each serving `requests`; server-side connections while all are warm."""
    with warm_containers(url, containers, requests) as application_name:
        return count_connections(admin_url, application_name)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--calls", type=int, default=50)
    parser.add_argument("--containers", type=int, default=8)
    args = parser.parse_args(argv)

    if not psycopg_installed():
        return 0
    try:
        url = prepare_database(ADMIN_URL)
    except Exception as exc:  # no server: say so, as the tests do
        print(f"skipped: no PostgreSQL server at {make_url(ADMIN_URL).render_as_string()}: {str(exc).splitlines()[0]}")
        return 0

    try:
        return _run(args, url)
    finally:
        drop_database(ADMIN_URL, url)


def _run(args: argparse.Namespace, url: URL) -> int:
    module = import_handler(url)
    variants = warm_variants(module, url)
    event, context = load_users_event(), FakeContext()
    check_same_body(variants, event, context)
    started = time.perf_counter()
    samples = run_interleaved(variants, event, context, rounds=args.rounds, calls=args.calls, warmup=20)
    elapsed = time.perf_counter() - started

    summaries = {key: summarise(values) for key, values in samples.items()}
    pooled = summaries["pooled"].median_us
    print(
        f"warm GET /users on PostgreSQL, {USERS} users, REST v1 event ({args.rounds} rounds x {args.calls} calls, {elapsed:.0f} s)"
    )
    print(f"{'variant':48} {'median us':>10} {'p99 us':>10} {'x pooled':>9}")
    for variant in variants:
        summary = summaries[variant.key]
        print(f"{variant.label:48} {summary.median_us:10.1f} {summary.p99_us:10.1f} {summary.median_us / pooled:9.2f}")

    connections = simulate_containers(url, ADMIN_URL, args.containers, requests=20)
    ceiling = args.containers * (Settings().pool_size + Settings().max_overflow)
    print(
        f"\n{args.containers} containers x 20 requests each, default pool (5 + 10 overflow): "
        f"{connections} server connections (one per container; the pool's ceiling would be {ceiling})"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
