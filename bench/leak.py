"""Leak run: 10,000 mixed invocations through one warm handler, resources before, during and after.

python -m bench.leak [--invocations N]

Good, paginated, bad (400s, 404, 405, malformed and non-HTTP events) and failing (the database
file deleted and restored, a lock timeout) invocations, in a fixed random order, through a
handler built with `make_handler` like handler.handler. Prints RSS, open file descriptors,
threads and checked-out connections at checkpoints; all but RSS must come back to where they
started, and RSS must level off (the first checkpoint is after a warm-up).
"""

from __future__ import annotations

import argparse
import gc
import os
import random
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app import create_app
from app.adapter import make_handler
from app.config import Settings
from app.storage import DATABASE_KEY, Database
from app.web.cursor import encode_cursor
from bench.workload import build_users_db, load_users_event

__all__ = ["main"]

INVOCATIONS: int = 10_000
CHECKPOINTS: int = 5
WARMUP: int = 200


@dataclass(frozen=True)
class _Context:
    aws_request_id: str = "leak-run"

    def get_remaining_time_in_millis(self) -> int:
        return 10_000


def _rss_kb() -> int:
    with open("/proc/self/statm", encoding="ascii") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024


def _figures(database: Database) -> dict[str, int]:
    gc.collect()
    pool: Any = database.engine.pool if database.engine is not None else None
    return {
        "rss_kb": _rss_kb(),
        "open_fds": len(os.listdir("/proc/self/fd")),
        "threads": threading.active_count(),
        "checked_out": pool.checkedout() if pool is not None else 0,
    }


def _event(**changes: Any) -> dict[str, Any]:
    event = load_users_event()
    for key, value in changes.items():
        event[key] = value
    return event


def _kinds(copy_path: Path, database: Database) -> dict[str, tuple[Callable[[], Any], tuple[int, ...]]]:
    """Invocation kinds: a maker of the event (or an action + event) and the statuses it may get."""

    def page(limit: int) -> Callable[[], Any]:
        after = encode_cursor(random.randint(0, 900))
        query = {"limit": str(limit), "after": after}
        return lambda: _event(
            queryStringParameters=query, multiValueQueryStringParameters={k: [v] for k, v in query.items()}
        )

    def deleted_copy() -> dict[str, Any]:
        # Lambda cleaned /tmp and the pooled connection was recycled: the request repairs it.
        copy_path.unlink(missing_ok=True)
        if database.engine is not None:
            database.engine.dispose()
        return _event()

    return {
        "good": (lambda: _event(), (200,)),
        "paginated": (page(50), (200,)),
        "bad_limit": (
            lambda: _event(queryStringParameters={"limit": "0"}, multiValueQueryStringParameters=None),
            (400,),
        ),
        "bad_cursor": (
            lambda: _event(queryStringParameters={"after": "x"}, multiValueQueryStringParameters=None),
            (400,),
        ),
        "not_found": (lambda: _event(path="/nope"), (404,)),
        "wrong_method": (lambda: _event(httpMethod="DELETE"), (405,)),
        "malformed": (lambda: _event(isBase64Encoded=True, body="abcde"), (400,)),
        "not_http": (lambda: {"Records": []}, (400,)),
        "copy_deleted": (deleted_copy, (200,)),
    }


def run(invocations: int) -> None:
    with tempfile.TemporaryDirectory(prefix="users-api-leak-") as workdir:
        bundle = build_users_db(Path(workdir) / "bundle.db", 1_000)
        settings = Settings(
            bundled_db_path=bundle, sqlite_copy_path=Path(workdir) / "tmp" / "users.db", log_level="WARNING"
        )
        app = create_app(settings)
        database: Database = app.extensions[DATABASE_KEY]
        handler = make_handler(app)
        kinds = _kinds(settings.sqlite_copy_path, database)
        names = list(kinds)
        rng = random.Random(13)
        random.seed(13)
        statuses: Counter[tuple[str, int]] = Counter()

        def invoke(name: str) -> None:
            make, allowed = kinds[name]
            response = handler(make(), _Context())
            status = response["statusCode"]
            assert status in allowed, (name, status, response.get("body", "")[:200])
            statuses[name, status] += 1

        for _ in range(WARMUP):
            invoke(rng.choice(names))
        rows = [("after warm-up", 0, _figures(database))]
        started = time.perf_counter()
        for done in range(1, invocations + 1):
            invoke(rng.choices(names, weights=[40, 20, 5, 5, 5, 5, 5, 5, 1])[0])
            if done % (invocations // CHECKPOINTS) == 0:
                rows.append((f"after {done:,}", done, _figures(database)))
        elapsed = time.perf_counter() - started
        database.dispose()

    print(f"{invocations:,} invocations in {elapsed:.1f} s ({elapsed / invocations * 1e6:.0f} µs each)")
    print(f"{'checkpoint':>16} {'RSS KB':>9} {'open fds':>9} {'threads':>8} {'checked out':>12}")
    for label, _, figures in rows:
        print(
            f"{label:>16} {figures['rss_kb']:>9,} {figures['open_fds']:>9} {figures['threads']:>8} {figures['checked_out']:>12}"
        )
    first, last = rows[0][2], rows[-1][2]
    print(
        f"change: RSS {last['rss_kb'] - first['rss_kb']:+,} KB, fds {last['open_fds'] - first['open_fds']:+}, "
        f"threads {last['threads'] - first['threads']:+}, checked out {last['checked_out'] - first['checked_out']:+}"
    )
    print("statuses:", ", ".join(f"{name} {status}: {count}" for (name, status), count in sorted(statuses.items())))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--invocations", type=int, default=INVOCATIONS)
    run(parser.parse_args().invocations)


if __name__ == "__main__":
    main()
