"""The engine (one per process, pooled) and the queries that use it."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, quote_plus

from sqlalchemy import Connection, Engine, Row, TextClause, create_engine, text
from sqlalchemy.engine import URL, Dialect, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.pool import NullPool, Pool, QueuePool

from app.config import Settings
from app.logs import LOGGER_NAME

if TYPE_CHECKING:
    from flask import Flask

__all__ = [
    "ENGINE_KEY",
    "create_db_engine",
    "current_engine",
    "database_url",
    "fetch_users_after",
    "password_forms",
    "pool_figures",
    "queue_pool_figures",
    "read_with_reconnect",
    "safe_url",
    "sqlite_read_only_url",
]

T = TypeVar("T")

_logger = logging.getLogger(f"{LOGGER_NAME}.db")

# Key of the engine in `Flask.extensions`.
ENGINE_KEY: str = "engine"

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


def sqlite_read_only_url(path: Path) -> URL:
    """URL of a SQLite file opened read-only: the /tmp copy is a snapshot, not a store."""
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})


def database_url(settings: Settings) -> URL:
    """The configured database, or the read-only /tmp copy of the bundled SQLite file."""
    if settings.database_url is None:
        return sqlite_read_only_url(settings.sqlite_copy_path)
    return make_url(settings.database_url)


def safe_url(url: URL) -> str:
    """The URL as text with any password masked, for logs."""
    return url.render_as_string(hide_password=True)


def password_forms(url: URL) -> list[str]:
    """The password of `url` as it may appear in text: raw, as SQLAlchemy renders it, percent-encoded."""
    if not url.password:
        return []
    password = str(url.password)
    rendered = URL.create("x", username="u", password=password, host="h").render_as_string(hide_password=False)
    return [
        password,
        rendered.removeprefix("x://u:").removesuffix("@h"),
        quote(password, safe=""),
        quote_plus(password),
    ]


def current_engine(app: Flask) -> Engine | None:
    """The engine `app` serves from now; None while a configured S3 snapshot is not loaded yet.

    A refreshed snapshot replaces it (app/snapshot_database.py), so read it per use.
    """
    engine: Engine | None = app.extensions.get(ENGINE_KEY)
    return engine


def create_db_engine(settings: Settings, url: URL | None = None) -> Engine:
    """Create the process-wide engine on `url` (default: `database_url(settings)`); it connects lazily."""
    if url is None:
        url = database_url(settings)
    is_sqlite = url.get_backend_name() == "sqlite"
    pre_ping = settings.pool_pre_ping if settings.pool_pre_ping is not None else not is_sqlite
    if settings.db_pool == "null":
        return create_engine(url, poolclass=NullPool)
    return create_engine(
        url,
        poolclass=QueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=pre_ping,
    )


def read_with_reconnect[T](engine: Engine, read: Callable[[Connection], T]) -> T:
    """Run an idempotent read on a pooled connection, once more on a fresh one if the first was dead.

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
        if not exc.connection_invalidated:
            raise
        _logger.warning("database connection lost; retrying once on a new connection", exc_info=exc)
    with engine.connect() as conn:
        return read(conn)


def fetch_users_after(conn: Connection, after: int | None, count: int) -> Sequence[Row[int, str]]:
    """Up to `count` (key, name) rows in key order, after key `after` (None: from the first)."""
    sql, names = _driver_statement(conn.dialect, after is not None)
    values: dict[str, Any] = {"count": count} if after is None else {"after": after, "count": count}
    parameters = values if names is None else tuple(values[name] for name in names)
    # The statement is compiled once per dialect: exec_driver_sql skips SQLAlchemy's per-call
    # compiled-cache lookup (~8 µs of a warm invocation), with the same bound parameters.
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


def queue_pool_figures(pool: QueuePool) -> tuple[int, int, int]:
    """(size, connections checked out, overflow connections in use) of a queue pool."""
    # QueuePool counts overflow from -pool_size; only connections beyond the pool size matter.
    return pool.size(), pool.checkedout(), max(pool.overflow(), 0)


def pool_figures(pool: Pool) -> dict[str, Any]:
    """Occupancy of a pool, for logs: size, connections checked out, overflow in use."""
    if not isinstance(pool, QueuePool):
        return {"pool": type(pool).__name__}
    size, checked_out, overflow = queue_pool_figures(pool)
    return {"pool_size": size, "pool_checked_out": checked_out, "pool_overflow": overflow}
