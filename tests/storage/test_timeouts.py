"""Every invocation answers within the time Lambda gives it, whatever the database does."""

from __future__ import annotations

import contextlib
import json
import socket
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from sqlalchemy import Connection, create_engine
from sqlalchemy.exc import DBAPIError

from app.adapter import LambdaHandler
from app.config import Settings
from app.storage.queries import (
    MIN_BUDGET_SECONDS,
    MIN_RETRY_SECONDS,
    RESPONSE_MARGIN_SECONDS,
    answer_deadline,
    read_with_reconnect,
    seconds_left,
)
from tests.support.engines import engine_of, queue_pool
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event, response_headers
from tests.support.tables import MakeUsersDb

REMAINING_MS = 4_000


def _refresh_bound(context: object) -> float | None:
    # What a snapshot refresh (app/storage/snapshot.py) makes of the deadline the edge computes.
    deadline = answer_deadline(context)
    return None if deadline is None else max(seconds_left(deadline), MIN_BUDGET_SECONDS)


def test_remaining_seconds_keeps_a_margin_and_a_floor() -> None:
    assert _refresh_bound(None) is None
    assert _refresh_bound(FakeContext(remaining_ms=9_000)) == pytest.approx(9.0 - RESPONSE_MARGIN_SECONDS, abs=0.05)
    assert _refresh_bound(FakeContext(remaining_ms=200)) == MIN_BUDGET_SECONDS


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections and never says a word."""
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    accepted: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        listener.settimeout(0.2)
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                accepted.append(listener.accept()[0])

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join(timeout=5)
    for connection in accepted:
        connection.close()
    listener.close()


def _timed_503(handler: LambdaHandler) -> float:
    started = time.monotonic()
    response = handler(make_v1_event(), FakeContext(remaining_ms=REMAINING_MS))
    elapsed = time.monotonic() - started
    assert response["statusCode"] == 503, response
    assert response_headers(response)["retry-after"] == "1"
    assert json.loads(response["body"])["error"] == "database_unavailable"
    return elapsed


@pytest.mark.slow
def test_timeouts_hung_postgresql_server_is_503_before_the_deadline(
    silent_server: int,
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
) -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed")
    # GIVEN a server that accepts and never answers
    url = f"postgresql+psycopg://users@127.0.0.1:{silent_server}/users"
    application = make_app(replace(settings, database_url=url))

    # WHEN an invocation with 4 s left reads THEN it gets the 503 JSON before those 4 s are up
    elapsed = _timed_503(serve_app(application))

    assert elapsed < REMAINING_MS / 1000
    assert queue_pool(engine_of(application)).checkedout() == 0


@pytest.mark.slow
def test_timeouts_locked_sqlite_is_503_before_the_deadline(
    make_users_db: MakeUsersDb, serve_db: Callable[..., LambdaHandler], served_engine: Callable[[], object]
) -> None:
    # GIVEN a SQLite file a writer holds an exclusive lock on
    path: Path = make_users_db(["Zed"])
    with contextlib.closing(sqlite3.connect(path, isolation_level=None)) as writer:
        writer.execute("PRAGMA journal_mode=DELETE")
        writer.execute("BEGIN EXCLUSIVE")
        handler = serve_db(path)

        # WHEN an invocation with 4 s left reads THEN 503 before the deadline
        elapsed = _timed_503(handler)
        writer.execute("ROLLBACK")

    assert elapsed < REMAINING_MS / 1000
    # And once the writer is gone, the same container serves again.
    assert handler(make_v1_event(), FakeContext())["body"] == "Zed"


def _lost_connection() -> DBAPIError:
    return DBAPIError("SELECT 1", None, Exception("server closed the connection"), connection_invalidated=True)


@pytest.mark.parametrize(("budget", "reads"), [(MIN_RETRY_SECONDS + 1.0, 2), (MIN_RETRY_SECONDS - 0.5, 1)])
def test_timeouts_lost_connection_is_retried_only_when_a_new_one_fits(budget: float, reads: int) -> None:
    # GIVEN a read whose first connection is lost (a dead server, a lost route)
    engine = create_engine("sqlite://")
    calls: list[int] = []

    def read(conn: Connection) -> str:
        calls.append(1)
        if len(calls) == 1:
            raise _lost_connection()
        return "read"

    # WHEN it runs with `budget` seconds left THEN it is retried only if a new connection can be made in time
    try:
        if reads == 2:
            assert read_with_reconnect(engine, read, deadline=time.monotonic() + budget) == "read"
        else:
            with pytest.raises(DBAPIError):
                read_with_reconnect(engine, read, deadline=time.monotonic() + budget)
    finally:
        engine.dispose()
    assert len(calls) == reads
