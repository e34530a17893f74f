"""A PostgreSQL server that vanishes under a pooled connection, in a network namespace of its own.

Run by tests/postgres/test_postgres_partition.py as
`unshare -n python -m tests.support.network_partition SCENARIO OUT`: the namespace has only its
own loopback, so taking it down loses every packet of this process
and its throwaway cluster (nothing else on the machine sees it), the way a failover or a lost
route does on AWS. Writes {"status", "seconds", "hung"} for the invocation it times to OUT.

Scenarios:
- between: the pool holds a connection; the loopback goes down; an invocation starts.
- waiting: an invocation waits on a lock another session holds; the loopback goes down.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from tests.support.lambda_events import make_v1_event
from tests.support.postgres_cluster import locate_server, throwaway_cluster

REMAINING_MS = 6_000  # what the Lambda context says is left, for each invocation
HANG_SECONDS = 20.0  # an answer later than this is a hang (the deadline is 6 s)
NAMES = ["Alice", "Bob"]


class _Context:
    aws_request_id = "partition-test"
    function_name = "users-api-test"

    def get_remaining_time_in_millis(self) -> int:
        return REMAINING_MS


def _loopback(state: str) -> None:
    subprocess.run(["ip", "link", "set", "lo", state], check=True, timeout=30)


def _invoke_in_background(answers: list[dict[str, Any]]) -> threading.Thread:
    import handler

    worker = threading.Thread(target=lambda: answers.append(handler.handler(make_v1_event(), _Context())), daemon=True)
    worker.start()
    return worker


def _wait_for_lock_wait(admin: Any) -> None:
    deadline = time.monotonic() + HANG_SECONDS
    while time.monotonic() < deadline:
        with admin.connect() as conn:
            waiting = conn.execute(
                text("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE '%users%'")
            ).scalar_one()
        if waiting:
            return
        time.sleep(0.05)
    raise RuntimeError("the invocation never waited on the lock")


def run(scenario: str) -> dict[str, Any]:
    _loopback("up")
    with throwaway_cluster(locate_server()) as cluster:
        admin = create_engine(cluster.admin_url, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(text("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)"))
            conn.execute(text("INSERT INTO users VALUES (1, :a), (2, :b)"), {"a": NAMES[0], "b": NAMES[1]})
        os.environ["DATABASE_URL"] = cluster.admin_url.render_as_string(hide_password=False)
        import handler

        # A warm container: its pool holds a connection made with this budget.
        assert handler.handler(make_v1_event(), _Context())["statusCode"] == 200
        answers: list[dict[str, Any]] = []
        locker = admin.connect()
        if scenario == "between":
            _loopback("down")
            started = time.monotonic()
            worker = _invoke_in_background(answers)
        else:
            locker.execute(text("BEGIN; LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            worker = _invoke_in_background(answers)
            _wait_for_lock_wait(admin)
            _loopback("down")
            started = time.monotonic()
        worker.join(HANG_SECONDS)
        seconds = time.monotonic() - started
        result = {"status": answers[0]["statusCode"] if answers else None, "seconds": seconds, "hung": not answers}
        _loopback("up")  # so the cluster stops cleanly
        locker.invalidate()
        admin.dispose()
        return result


if __name__ == "__main__":
    outcome = run(sys.argv[1])
    Path(sys.argv[2]).write_text(json.dumps(outcome))
    sys.stdout.flush()
    os._exit(0)  # a hung invocation's thread must not keep the process alive
