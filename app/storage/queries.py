"""The SQL GET /users runs: keyset reads of (key, name) rows, retried once on a dropped connection."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from sqlalchemy import Connection, Engine, Row, TextClause, text
from sqlalchemy.engine import Dialect
from sqlalchemy.exc import DBAPIError

from app.logs import LOGGER_NAME

__all__ = ["fetch_users_after", "read_with_reconnect"]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")

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


def read_with_reconnect[T](
    engine: Engine, read: Callable[[Connection], T], *, repair: Callable[[DBAPIError], bool] | None = None
) -> T:
    """Run an idempotent read on a pooled connection, once more on a fresh one if the first was dead.

    `repair`, called with any other database error, may fix its cause (a deleted /tmp copy)
    and say so; the read is then retried once too.

    A frozen Lambda container keeps its pooled connections while the server, a proxy or a NAT
    may drop them; a server restart drops them all. Pre-ping catches most of that at checkout;
    this catches the rest (pre-ping off, or a drop between ping and query). SQLAlchemy marks
    the pool stale on a disconnect, so the retry gets a new connection. `read` must return
    everything it read: nothing has been sent to the client when it fails.
    """
    try:
        with engine.connect() as conn:
            return read(conn)
    except DBAPIError as exc:
        if exc.connection_invalidated:
            _logger.warning("database connection lost; retrying once on a new connection", exc_info=exc)
        elif repair is None or not repair(exc):
            raise
    with engine.connect() as conn:
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
