"""The SQL GET /users runs: keyset reads of (key, name) rows, retried once on a dropped connection."""

from __future__ import annotations

import contextvars
import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Row, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.logs import LOGGER_NAME

__all__ = [
    "DEADLINE",
    "DEFAULT_BUDGET_SECONDS",
    "WAIT_LIMIT_KEY",
    "budget_seconds",
    "fetch_users_after",
    "read_with_reconnect",
    "remaining_seconds",
]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")

# When the current request must have its answer (time.monotonic()): set per request from the
# Lambda context by read_with_reconnect, read when a connection is made (app/storage/engine.py)
# and by _fit_wait_limit. Each invocation gets
# the function's whole timeout, so the bounds a connection is made with hold for later ones.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("users_api_deadline", default=None)
# Without a Lambda context (the local server): the function timeout serverless.yml sets.
DEFAULT_BUDGET_SECONDS: float = 10.0
# The wait limit a connection was made with (ms), in its record's info; and how far (1/N of
# it) a request's budget may differ before the limit is set again.
WAIT_LIMIT_KEY: str = "users_api_wait_limit_ms"
_LIMIT_TOLERANCE: int = 10
# Left for serverless-wsgi and the runtime to send the answer, out of the invocation's time.
RESPONSE_MARGIN_SECONDS: float = 0.5
# A request is never given less than this, even when the context says less remains.
MIN_BUDGET_SECONDS: float = 1.0
# The retry on a lost connection is skipped with less left than this: libpq's shortest connect
# timeout (2 s; app/storage/engine.py) could not end in time.
MIN_RETRY_SECONDS: float = 2.0

# Users are listed, and paged, in key order. SQLite's key is the rowid (our `id INTEGER
# PRIMARY KEY` is that rowid, and any users table has one); other databases need the `id`
# primary key the README's schema gives them. Keyset queries only: an index seek to `:after`,
# then `:count` rows, whatever the table size. Statements are fixed; input is bound, never
# spliced in. Keyed by (is SQLite, has `after`).
_SELECT_USERS: dict[tuple[bool, bool], TextClause] = {
    (True, False): text("SELECT rowid, name FROM users ORDER BY rowid LIMIT :count"),
    (True, True): text("SELECT rowid, name FROM users WHERE rowid > :after ORDER BY rowid LIMIT :count"),
    (False, False): text("SELECT id, name FROM users ORDER BY id LIMIT :count"),
    (False, True): text("SELECT id, name FROM users WHERE id > :after ORDER BY id LIMIT :count"),
}


def _budget_left() -> float:
    deadline = DEADLINE.get()
    return math.inf if deadline is None else deadline - time.monotonic()


def budget_seconds() -> float:
    """Seconds the current request has left for the database (DEFAULT_BUDGET_SECONDS without a deadline)."""
    deadline = DEADLINE.get()
    return DEFAULT_BUDGET_SECONDS if deadline is None else max(deadline - time.monotonic(), 0.1)


def _fit_wait_limit(conn: Connection) -> None:
    """Bring a pooled connection's wait limit to this request's budget when it is far off.

    A connection keeps the limit it was made with; on Lambda every invocation has about the
    same budget, so this almost never costs a statement (a PRAGMA for SQLite, a SET for PostgreSQL).
    """
    info = conn.info
    limit_ms = info.get(WAIT_LIMIT_KEY)
    if limit_ms is None:
        return
    budget_ms = int(budget_seconds() * 1000)
    if abs(budget_ms - limit_ms) * _LIMIT_TOLERANCE <= limit_ms:
        return
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql(f"PRAGMA busy_timeout = {budget_ms}")
    else:
        conn.exec_driver_sql(f"SET statement_timeout = {budget_ms}")
        conn.commit()  # outside the read's transaction, so it outlives it
    info[WAIT_LIMIT_KEY] = budget_ms


def remaining_seconds(context: Any) -> float | None:
    """What a Lambda context leaves for the database: remaining time less the response's margin, floored."""
    remaining_millis = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_millis is None:  # no Lambda context: the local server, or a hand-made one
        return None
    remaining = float(remaining_millis()) / 1000
    return max(remaining - RESPONSE_MARGIN_SECONDS, MIN_BUDGET_SECONDS)


def read_with_reconnect[T](
    engine: Engine,
    read: Callable[[Connection], T],
    *,
    repair: Callable[[DBAPIError], bool] | None = None,
    budget_seconds: float | None = None,
) -> T:
    """Run an idempotent read on a pooled connection, once more on a fresh one if the first was dead.

    `repair`, called with any other database error, may fix its cause (a deleted /tmp copy)
    and say so; the read is then retried once too. `budget_seconds` bounds the connections made
    for it (connect, lock waits, statements: app/storage/engine.py).

    A frozen Lambda container keeps its pooled connections while the server, a proxy or a NAT
    may drop them; a server restart drops them all. Pre-ping catches most of that at checkout;
    this catches the rest (pre-ping off, or a drop between ping and query). SQLAlchemy marks
    the pool stale on a disconnect, so the retry gets a new connection. `read` must return
    everything it read: nothing has been sent to the client when it fails.
    """
    DEADLINE.set(None if budget_seconds is None else time.monotonic() + budget_seconds)
    try:
        with engine.connect() as conn:
            _fit_wait_limit(conn)
            return read(conn)
    except DBAPIError as exc:
        if exc.connection_invalidated:
            if _budget_left() < MIN_RETRY_SECONDS:
                raise  # a new connection could not be made in time: answer 503 now, not after the deadline
            _logger.warning("database connection lost; retrying once on a new connection", exc_info=exc)
        elif repair is None or not repair(exc):
            raise
    with engine.connect() as conn:
        _fit_wait_limit(conn)
        return read(conn)


def fetch_users_after(conn: Connection, after: int | None, count: int) -> Sequence[Row[int, str]]:
    """Up to `count` (key, name) rows in key order, after key `after` (None: from the first)."""
    sql, names = _driver_statement(conn.dialect, after is not None)
    values: dict[str, Any] = {"count": count} if after is None else {"after": after, "count": count}
    parameters = values if names is None else tuple(values[name] for name in names)
    # The statement is compiled once per dialect: exec_driver_sql skips SQLAlchemy's per-call
    # compiled-cache lookup (bench/RESULTS.md, "where the time goes"), with the same bound parameters.
    return conn.exec_driver_sql(sql, parameters).all()


# (dialect name, paramstyle, has `after`) -> (SQL in the driver's paramstyle, positional names or None).
_DRIVER_STATEMENTS: dict[tuple[str, str, bool], tuple[str, tuple[str, ...] | None]] = {}


def _driver_statement(dialect: Dialect, has_after: bool) -> tuple[str, tuple[str, ...] | None]:
    key = (dialect.name, dialect.paramstyle, has_after)
    cached = _DRIVER_STATEMENTS.get(key)
    if cached is None:
        compiled = _SELECT_USERS[dialect.name == "sqlite", has_after].compile(dialect=dialect)
        names = tuple(compiled.positiontup or ()) if compiled.positional else None
        cached = _DRIVER_STATEMENTS[key] = (compiled.string, names)
    return cached
