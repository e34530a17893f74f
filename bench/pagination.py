"""Page latency and peak memory of GET /users at 1k, 100k and 1M users (issue #4), and gzip (#19).

    python bench/pagination.py [--rounds 400]      # or: make bench-pagination
    python -m bench.pagination --compression-only  # only the gzip figures (~1 min)

Not a test: it prints figures, it asserts nothing about time. Every request goes through
`handler.handler` with the captured REST v1 sample event (events/rest-v1.json).

- Page latency: pages of `limit=1000` starting at random cursors, so every table size
  serves the same amount of work; the sizes are interleaved round by round (shuffled
  order) and the median is quoted. The ratio 1M / 1k is the figure that matters: keyset
  pages should cost the same at any table size (target <= 1.5x).
- Default page: the first page without `limit` (as many names as fit in 6 MB), for scale.
- Peak RSS: each size in a fresh interpreter (ru_maxrss), after serving 200 `limit=1000`
  pages, and after then walking the whole table by its `next` links.
- Compression, on the 1M table: the first page without `limit` (as many names as the
  response limit allows), as text and JSON, with and without `Accept-Encoding: gzip`,
  through the REST (6 MB) and ALB (1 MB) events; names per page, the response JSON's size,
  and process CPU time per page (median of interleaved rounds). Written to the "Compression"
  section of bench/RESULTS.md (and bench/compression.json, which `python -m bench` reads).
"""

from __future__ import annotations

import argparse
import base64
import copy
import gzip
import json
import os
import random
import re
import resource
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from flask import Flask

from app import create_app
from app.adapter import LambdaHandler, make_handler
from app.config import Settings
from app.storage import DATABASE_KEY
from app.types import ALB_RESPONSE_LIMIT, LAMBDA_RESPONSE_LIMIT
from app.web.cursor import encode_cursor
from app.web.users import RESPONSE_RESERVE
from bench.report import compression_section, replace_section
from bench.workload import REPO_ROOT

SIZES: tuple[int, ...] = (1_000, 100_000, 1_000_000)
PAGE_LIMIT: int = 1_000
TARGET_RATIO: float = 1.5
_NEXT_CURSOR = re.compile(r"[?&]after=([A-Za-z0-9_-]+)")
COMPRESSION_JSON = REPO_ROOT / "bench" / "compression.json"
RESULTS_PATH = REPO_ROOT / "bench" / "RESULTS.md"
# (label, event source, format, Accept-Encoding) of each compression case.
COMPRESSION_CASES: tuple[tuple[str, str, str, str | None], ...] = (
    ("REST (6 MB), text", "rest", "text", None),
    ("REST (6 MB), text, gzip", "rest", "text", "gzip"),
    ("REST (6 MB), JSON", "rest", "json", None),
    ("REST (6 MB), JSON, gzip", "rest", "json", "gzip"),
    ("ALB (1 MB), text", "alb", "text", None),
    ("ALB (1 MB), text, gzip", "alb", "text", "gzip"),
)


@dataclass(frozen=True)
class _Context:
    aws_request_id: str = "bench-request-id"


def build_users_db(path: Path, count: int) -> None:
    """`count` users named user<id>, ids 1..count, generated inside SQLite."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.execute(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < ?) "
            "INSERT INTO users (id, name) SELECT i, 'user' || i FROM seq",
            (count,),
        )
        connection.commit()
    finally:
        connection.close()


def rest_event(query: dict[str, str] | None, accept_encoding: str | None = None) -> dict[str, Any]:
    """The captured REST v1 sample, asking for /users with `query` (and Accept-Encoding, if given)."""
    sample = json.loads((REPO_ROOT / "events" / "rest-v1.json").read_text(encoding="utf-8"))
    event: dict[str, Any] = copy.deepcopy(sample)
    event["queryStringParameters"] = query
    event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    _set_accept_encoding(event, accept_encoding)
    return event


def alb_event(query: dict[str, str], accept_encoding: str | None) -> dict[str, Any]:
    """The captured ALB sample (single-value headers), asking for /users with `query`."""
    sample = json.loads((REPO_ROOT / "events" / "alb.json").read_text(encoding="utf-8"))
    event: dict[str, Any] = copy.deepcopy(sample)
    event["path"] = "/users"
    event["queryStringParameters"] = query
    _set_accept_encoding(event, accept_encoding)
    return event


def _set_accept_encoding(event: dict[str, Any], accept_encoding: str | None) -> None:
    # The samples were captured from clients that send their own Accept-Encoding.
    for key in ("headers", "multiValueHeaders"):
        headers = event.get(key) or {}
        for name in [name for name in headers if name.lower() == "accept-encoding"]:
            del headers[name]
        if accept_encoding is not None and key in event and event[key] is not None:
            headers["accept-encoding"] = accept_encoding if key == "headers" else [accept_encoding]


def page_events(size: int, count: int, rng: random.Random) -> list[dict[str, Any]]:
    """`count` events for full pages of PAGE_LIMIT names at random places in a table of `size`."""
    return [
        rest_event({"limit": str(PAGE_LIMIT), "after": encode_cursor(rng.randint(0, size - PAGE_LIMIT))})
        for _ in range(count)
    ]


def load_handler(database: Path) -> LambdaHandler:
    """Import `handler` as Lambda does, on `database`, with the per-invocation log line off."""
    os.environ["DATABASE_URL"] = f"sqlite:///{database}"
    os.environ["LOG_LEVEL"] = "WARNING"
    import handler

    return handler.handler


def app_for(database: Path) -> Flask:
    """The app of a container started on `database`, with its own pool."""
    return create_app(Settings(database_url=f"sqlite:///{database}", log_level="WARNING"))


def timed(handler: LambdaHandler, event: dict[str, Any]) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    response: dict[str, Any] = handler(event, _Context())
    elapsed = time.perf_counter() - started
    assert response["statusCode"] == 200, response.get("body", "")[:200]
    return elapsed, response


def measure_latency(databases: dict[int, Path], rounds: int) -> dict[int, dict[str, float]]:
    """Interleaved rounds: per size, median/p90 of limit=1000 pages and the default first page."""
    rng = random.Random(4)
    apps = {size: app_for(database) for size, database in databases.items()}
    # Built the way handler.py builds `handler.handler`.
    containers = {size: make_handler(app) for size, app in apps.items()}
    events = {size: page_events(size, 64, rng) for size in SIZES}

    for size in SIZES:  # warm: pools, statement caches
        for event in events[size][:20]:
            timed(containers[size], event)

    page_times: dict[int, list[float]] = {size: [] for size in SIZES}
    for round_number in range(rounds):
        for size in rng.sample(SIZES, len(SIZES)):
            elapsed, response = timed(containers[size], events[size][round_number % 64])
            assert response["body"].count(",") == PAGE_LIMIT - 1
            page_times[size].append(elapsed)

    default_event = rest_event(None)
    default_times: dict[int, list[float]] = {size: [] for size in SIZES}
    default_shape: dict[int, tuple[int, int]] = {}
    for _ in range(max(3, rounds // 80)):
        for size in rng.sample(SIZES, len(SIZES)):
            elapsed, response = timed(containers[size], default_event)
            default_times[size].append(elapsed)
            default_shape[size] = (response["body"].count(",") + 1, len(json.dumps(response)))

    for app in apps.values():
        app.extensions[DATABASE_KEY].dispose()
    return {
        size: {
            "page_median_us": statistics.median(page_times[size]) * 1e6,
            "page_p90_us": statistics.quantiles(page_times[size], n=10)[-1] * 1e6,
            "default_median_ms": statistics.median(default_times[size]) * 1e3,
            "default_names": default_shape[size][0],
            "default_bytes": default_shape[size][1],
        }
        for size in SIZES
    }


def measure_compression(database: Path, rounds: int) -> dict[str, Any]:
    """The first page without `limit` of each COMPRESSION_CASES case: names, bytes, CPU (interleaved rounds)."""
    app = app_for(database)
    container = make_handler(app)
    events = {
        label: (rest_event if source == "rest" else alb_event)({"format": name_format}, encoding)
        for label, source, name_format, encoding in COMPRESSION_CASES
    }
    cpu: dict[str, list[float]] = {label: [] for label in events}
    shape: dict[str, dict[str, Any]] = {}
    rng = random.Random(19)
    for _ in range(rounds):
        for label in rng.sample(list(events), len(events)):
            started = time.process_time()
            response = container(events[label], _Context())
            cpu[label].append(time.process_time() - started)
            assert response["statusCode"] == 200, response.get("body", "")[:200]
            shape[label] = {
                "names": _count_names(response),
                "bytes": len(json.dumps(response)),
                # What a page may take: the limit less the reserve for status and headers.
                "budget": (
                    ALB_RESPONSE_LIMIT if events[label].get("requestContext", {}).get("elb") else LAMBDA_RESPONSE_LIMIT
                )
                - RESPONSE_RESERVE,
            }
    app.extensions[DATABASE_KEY].dispose()
    return {
        "date": time.strftime("%Y-%m-%d", time.gmtime()),
        "commit": _commit(),
        "python": sys.version.split()[0],
        "users": SIZES[-1],
        "rounds": rounds,
        "cases": [{"label": label, **shape[label], "cpu_ms": statistics.median(cpu[label]) * 1e3} for label in events],
    }


def _count_names(response: dict[str, Any]) -> int:
    body: str = response["body"]
    if response["isBase64Encoded"]:
        body = gzip.decompress(base64.b64decode(body)).decode("utf-8")
    if body.startswith("{"):
        return len(json.loads(body)["users"])
    return body.count(",") + 1  # user<id> names: no quoting


def _commit() -> str:
    found = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=False)
    return found.stdout.strip() or "unknown"


def write_compression(figures: dict[str, Any]) -> None:
    section = compression_section(figures)
    print("\n".join(section))
    COMPRESSION_JSON.write_text(json.dumps(figures, indent=2) + "\n", encoding="utf-8")
    RESULTS_PATH.write_text(replace_section(RESULTS_PATH.read_text(encoding="utf-8"), section), encoding="utf-8")
    print(f"\nWrote {COMPRESSION_JSON.name} and its section of {RESULTS_PATH.name}")


def child_rss(database: Path, size: int) -> None:
    """In a fresh interpreter: peak RSS after 200 limit pages, then after a whole walk; JSON on stdout."""
    handler = load_handler(database)
    imported_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    for event in page_events(size, 200, random.Random(7)):
        timed(handler, event)
    pages_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss

    names = pages = largest = 0
    query: dict[str, str] | None = None
    while True:
        _, response = timed(handler, rest_event(query))
        pages += 1
        names += response["body"].count(",") + 1
        largest = max(largest, len(json.dumps(response)))
        link = response["multiValueHeaders"].get("Link")
        if link is None:
            break
        match = _NEXT_CURSOR.search(link[0])
        assert match is not None, link
        query = {"after": match.group(1)}
    assert names == size, (names, size)
    walk_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    figures = {"imported_kb": imported_kb, "pages_kb": pages_kb, "walk_kb": walk_kb, "walk_pages": pages}
    print(json.dumps({**figures, "largest_bytes": largest}))


def measure_rss(databases: dict[int, Path]) -> dict[int, dict[str, int]]:
    results = {}
    for size, database in databases.items():
        completed = subprocess.run(
            [sys.executable, "-m", "bench.pagination", "--child-rss", str(database), str(size)],
            capture_output=True,
            text=True,
            check=True,
            cwd=REPO_ROOT,
        )
        results[size] = json.loads(completed.stdout.strip().splitlines()[-1])
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=400, help="interleaved rounds of limit=1000 pages")
    parser.add_argument("--child-rss", nargs=2, metavar=("DB", "SIZE"), help=argparse.SUPPRESS)
    parser.add_argument("--compression-rounds", type=int, default=5, help="interleaved rounds of the gzip cases")
    parser.add_argument("--compression-only", action="store_true", help="only the gzip figures")
    parser.add_argument("--no-write", action="store_true", help="print only; leave RESULTS.md alone")
    arguments = parser.parse_args()
    if arguments.child_rss:
        child_rss(Path(arguments.child_rss[0]), int(arguments.child_rss[1]))
        return
    if arguments.compression_only:
        with tempfile.TemporaryDirectory(prefix="bench-pagination-") as temp_dir:
            database = Path(temp_dir) / "users.db"
            build_users_db(database, SIZES[-1])
            figures = measure_compression(database, arguments.compression_rounds)
        if arguments.no_write:
            print("\n".join(compression_section(figures)))
        else:
            write_compression(figures)
        return

    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-pagination-") as temp_dir:
        databases = {size: Path(temp_dir) / f"users-{size}.db" for size in SIZES}
        for size, database in databases.items():
            build_users_db(database, size)
        rss = measure_rss(databases)
        latency = measure_latency(databases, arguments.rounds)
        compression = measure_compression(databases[SIZES[-1]], arguments.compression_rounds)

    print(f"GET /users through handler.handler (REST v1 sample event), Python {sys.version.split()[0]}")
    print(f"page = limit={PAGE_LIMIT} from a random cursor; {arguments.rounds} interleaved rounds; RSS per size in a")
    print("fresh interpreter (after import -> after 200 pages -> after walking the whole table by default pages)")
    print()
    print(
        "| users | page median | page p90 | default first page | peak RSS: import / 200 pages / whole walk "
        "| whole walk: pages, largest response |"
    )
    print("| ---: | ---: | ---: | ---: | ---: | ---: |")
    for size in SIZES:
        figures, memory = latency[size], rss[size]
        print(
            f"| {size:,} | {figures['page_median_us']:,.0f} µs | {figures['page_p90_us']:,.0f} µs "
            f"| {figures['default_median_ms']:,.1f} ms ({figures['default_names']:,} names, "
            f"{figures['default_bytes'] / 1e6:.2f} MB) "
            f"| {memory['imported_kb'] / 1024:.0f} / {memory['pages_kb'] / 1024:.0f} / {memory['walk_kb'] / 1024:.0f} MB "
            f"| {memory['walk_pages']}, {memory['largest_bytes']:,} bytes |"
        )
    ratio = latency[SIZES[-1]]["page_median_us"] / latency[SIZES[0]]["page_median_us"]
    verdict = "met" if ratio <= TARGET_RATIO else "NOT met"
    print()
    print(f"page latency 1M / 1k: {ratio:.2f}x (target <= {TARGET_RATIO}x: {verdict})")
    middle = latency[SIZES[1]]["page_median_us"] / latency[SIZES[0]]["page_median_us"]
    print(f"page latency 100k / 1k: {middle:.2f}x")
    print()
    if arguments.no_write:
        print("\n".join(compression_section(compression)))
    else:
        write_compression(compression)
    print(f"total time {time.perf_counter() - started:.1f} s")


if __name__ == "__main__":
    main()
