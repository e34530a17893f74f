"""The SQL GET /users runs: keyset reads of (key, name) rows, retried once on a dropped connection."""

from __future__ import annotations

import contextvars
import logging
import math
import operator
import time
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Row, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.logs import LOGGER_NAME
from app.storage.engine import LEADING_RESULTS_KEY, WAIT_LIMIT_KEY

__all__ = [
    "DEADLINE",
    "MIN_BUDGET_SECONDS",
    "answer_deadline",
    "fetch_users_after",
    "read_budget_seconds",
    "read_with_reconnect",
    "reads_cross_a_network",
    "seconds_left",
]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")

# When the current read must be done (time.monotonic()): set by read_with_reconnect from the
# deadline the web layer computed once per request (answer_deadline), read by each statement
# (its time limit) and, through read_budget_seconds, by the engine's connect hook
# (app/storage/engine.py). A contextvar only because SQLAlchemy's connect hook takes no
# argument of ours.
DEADLINE: contextvars.ContextVar[float | None] = contextvars.ContextVar("users_api_deadline", default=None)
# Without a Lambda context (the local server): the function timeout serverless.yml sets.
DEFAULT_BUDGET_SECONDS: float = 10.0
# A request is never given less than this, even when the context says less remains.
MIN_BUDGET_SECONDS: float = 1.0
# SQLite: how far (1/N of it) a request's budget may differ from a connection's busy timeout
# before it is set again.
_LIMIT_TOLERANCE: int = 10
# Left for serverless-wsgi and the runtime to send the answer, out of the invocation's time.
RESPONSE_MARGIN_SECONDS: float = 0.5
# The retry on a lost connection is skipped with less left than this: libpq's shortest connect
# timeout (2 s; app/storage/engine.py) could not end in time.
MIN_RETRY_SECONDS: float = 2.0

# Users are listed, and paged, in key order: the `id INTEGER PRIMARY KEY` / `id bigint PRIMARY
# KEY` docs/postgresql.md's schema gives them (in SQLite the rowid's alias: the same plan, and a
# WITHOUT ROWID table or a view works too). Keyset queries only: an index seek to `:after`,
# then `:count` rows, whatever the table size. Statements are fixed; input is bound, never
# spliced in. Keyed by has `after`.
_SELECT_USERS: dict[bool, TextClause] = {
    False: text("SELECT id, name FROM users ORDER BY id LIMIT :count"),
    True: text("SELECT id, name FROM users WHERE id > :after ORDER BY id LIMIT :count"),
}
# psycopg: one simple-protocol Query message holding a transaction-local time limit and the
# read. PostgreSQL runs a multi-statement string as one implicit transaction, so SET LOCAL
# holds for the SELECT and ends with it: no session state, nothing for a pooler to pin, one
# round trip, no BEGIN/ROLLBACK. Only integers of ours are spliced in (%d of operator.index).
_PG_TIME_LIMIT: str = "SET LOCAL statement_timeout = %d; "
_PG_SELECT_USERS: dict[bool, str] = {
    False: _PG_TIME_LIMIT + "SELECT id, name FROM users ORDER BY id LIMIT %d",
    True: _PG_TIME_LIMIT + "SELECT id, name FROM users WHERE id > %d ORDER BY id LIMIT %d",
}
_PG_OPTIONS: dict[str, Any] = {"no_parameters": True, LEADING_RESULTS_KEY: 1}
# SQLite (sqlite3 module): the error of a TEXT value that is not UTF-8, and the read that
# then fetches such values undecoded, with their storage class for the log.
_UNDECODABLE_TEXT: str = "Could not decode to UTF-8"
_SQLITE_LENIENT_SELECT: dict[bool, str] = {
    False: "SELECT id, name, typeof(name) FROM users ORDER BY id LIMIT ?",
    True: "SELECT id, name, typeof(name) FROM users WHERE id > ? ORDER BY id LIMIT ?",
}


def seconds_left(deadline: float | None) -> float:
    """Seconds until `deadline` (time.monotonic()); infinite without one. The one measure of time left."""
    return math.inf if deadline is None else deadline - time.monotonic()


def read_budget_seconds() -> float:
    """Seconds the current read (DEADLINE) has left for the database; DEFAULT_BUDGET_SECONDS without one."""
    deadline = DEADLINE.get()
    return DEFAULT_BUDGET_SECONDS if deadline is None else max(seconds_left(deadline), 0.1)


def _fit_wait_limit(conn: Connection) -> None:
    """SQLite: bring a pooled connection's busy timeout to this request's budget when it is far off.

    A connection keeps the limit it was made with; on Lambda every invocation has about the
    same budget, so this almost never costs a PRAGMA (a client-side setting: no server).
    """
    info = conn.info
    limit_ms = info.get(WAIT_LIMIT_KEY)
    if limit_ms is None:
        return
    budget_ms = int(read_budget_seconds() * 1000)
    if abs(budget_ms - limit_ms) * _LIMIT_TOLERANCE <= limit_ms:
        return
    conn.exec_driver_sql(f"PRAGMA busy_timeout = {budget_ms}")
    info[WAIT_LIMIT_KEY] = budget_ms


def answer_deadline(context: Any) -> float | None:
    """When the answer must be ready (time.monotonic()), from a Lambda context: its remaining time
    less the response's margin. None without a context (the local server). Computed once per request."""
    remaining_millis = getattr(context, "get_remaining_time_in_millis", None)
    if remaining_millis is None:
        return None
    return time.monotonic() + float(remaining_millis()) / 1000 - RESPONSE_MARGIN_SECONDS


def read_with_reconnect[T](
    engine: Engine,
    read: Callable[[Connection], T],
    *,
    repair: Callable[[DBAPIError], bool] | None = None,
    deadline: float | None = None,
) -> T:
    """Run an idempotent read on a pooled connection, once more on a fresh one if the first was dead.

    `repair`, called with any other database error, may fix its cause (a deleted /tmp copy)
    and say so; the read is then retried once too. `deadline` (answer_deadline) bounds the
    connections made for it and each statement (connect, lock waits: app/storage/engine.py and
    fetch_users_after); never less than MIN_BUDGET_SECONDS from now.

    A frozen Lambda container keeps its pooled connections while the server, a proxy or a NAT
    may drop them; a server restart drops them all. Pre-ping catches most of that at checkout;
    this catches the rest (pre-ping off, or a drop between ping and query). SQLAlchemy marks
    the pool stale on a disconnect, so the retry gets a new connection. `read` must return
    everything it read: nothing has been sent to the client when it fails.
    """
    DEADLINE.set(None if deadline is None else max(deadline, time.monotonic() + MIN_BUDGET_SECONDS))
    try:
        with engine.connect() as conn:
            return read(conn)
    except DBAPIError as exc:
        if exc.connection_invalidated:
            if seconds_left(DEADLINE.get()) < MIN_RETRY_SECONDS:
                raise  # a new connection could not be made in time: answer 503 now, not after the deadline
            _logger.warning("database connection lost; retrying once on a new connection", exc_info=exc)
        elif repair is None or not repair(exc):
            raise
    with engine.connect() as conn:
        return read(conn)


def reads_cross_a_network(conn: Connection) -> bool:
    """Whether each read is a round trip to a server (not SQLite's in-process file)."""
    return conn.dialect.name != "sqlite"


def fetch_users_after(conn: Connection, after: int | None, count: int) -> Sequence[Row[int, str]]:
    """Up to `count` (key, name) rows in key order, after key `after` (None: from the first)."""
    dialect = conn.dialect
    if dialect.driver == "psycopg":
        # The statement's time limit is what the read has left, so a lock wait ends in time.
        limit_ms = max(1, int(read_budget_seconds() * 1000))
        if after is None:
            sql = _PG_SELECT_USERS[False] % (limit_ms, operator.index(count))
        else:
            sql = _PG_SELECT_USERS[True] % (limit_ms, operator.index(after), operator.index(count))
        return conn.exec_driver_sql(sql, execution_options=_PG_OPTIONS).all()
    is_sqlite = dialect.name == "sqlite"
    if is_sqlite:
        _fit_wait_limit(conn)
    sql, names = _driver_statement(conn.dialect, after is not None)
    values: dict[str, Any] = {"count": count} if after is None else {"after": after, "count": count}
    parameters = values if names is None else tuple(values[name] for name in names)
    # The statement is compiled once per dialect: exec_driver_sql skips SQLAlchemy's per-call
    # compiled-cache lookup (bench/RESULTS.md, "where the time goes"), with the same bound parameters.
    if not is_sqlite:
        return conn.exec_driver_sql(sql, parameters).all()
    try:
        rows = conn.exec_driver_sql(sql, parameters).all()
    except DBAPIError as exc:
        if _UNDECODABLE_TEXT not in str(exc.orig):
            raise
        return _read_leniently(conn, after, count)
    # SQLite keeps whatever a writer stored: a BLOB, a number or NULL in `name` is served too.
    for row in rows:
        if type(row[1]) is not str:
            return _read_leniently(conn, after, count)
    return rows


def _read_leniently(conn: Connection, after: int | None, count: int) -> Sequence[Row[int, str]]:
    """SQLite: the rows fetch_users_after reads, any stored value of `name` made text (docs/pagination.md).

    Text that is not UTF-8 has its bad bytes replaced by U+FFFD; a BLOB is read as UTF-8 the
    same way; NULL is the empty name; a number its decimal form. One warning per such row,
    naming its id. Only a chunk holding such a row takes this path: the rest keep the native one.
    """
    raw = conn.connection.dbapi_connection
    assert raw is not None
    parameters = (count,) if after is None else (after, count)
    # text_factory=bytes: sqlite3 hands TEXT over undecoded instead of raising on invalid UTF-8.
    raw.text_factory = bytes
    try:
        stored = raw.execute(_SQLITE_LENIENT_SELECT[after is not None], parameters).fetchall()
    finally:
        raw.text_factory = str
    rows: list[Any] = []
    for key, name, stored_as in stored:
        kind = stored_as.decode()  # typeof(): 'text', 'blob', 'null', 'integer' or 'real'
        if type(name) is bytes:
            try:
                text = name.decode()
            except UnicodeDecodeError:
                text = name.decode(errors="replace")
                kind = f"{kind} not UTF-8"
            else:
                if kind == "text":
                    rows.append((key, text))
                    continue
        else:
            text = "" if name is None else str(name)
        _logger.warning("stored name repaired", extra={"fields": {"user_id": key, "stored_as": kind}})
        rows.append((key, text))
    return rows


# (dialect name, paramstyle, has `after`) -> (SQL in the driver's paramstyle, positional names or None).
_DRIVER_STATEMENTS: dict[tuple[str, str, bool], tuple[str, tuple[str, ...] | None]] = {}


def _driver_statement(dialect: Dialect, has_after: bool) -> tuple[str, tuple[str, ...] | None]:
    key = (dialect.name, dialect.paramstyle, has_after)
    cached = _DRIVER_STATEMENTS.get(key)
    if cached is None:
        compiled = _SELECT_USERS[has_after].compile(dialect=dialect)
        names = tuple(compiled.positiontup or ()) if compiled.positional else None
        cached = _DRIVER_STATEMENTS[key] = (compiled.string, names)
    return cached
