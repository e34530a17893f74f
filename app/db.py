"""The engine (one per process, pooled) and the queries that use it."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import quote

from sqlalchemy import Engine, TextClause, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import Pool, QueuePool

from app.config import Settings

__all__ = [
    "ENGINE_KEY",
    "create_db_engine",
    "database_url",
    "fetch_user_names",
    "pool_figures",
    "safe_url",
    "sqlite_read_only_url",
]

# Key of the engine in `Flask.extensions`.
ENGINE_KEY: str = "engine"

# SQLite orders by rowid (our `id INTEGER PRIMARY KEY` is that rowid, and any users table
# has one); other databases need the `id` primary key the README's schema gives them.
_SELECT_NAMES_SQLITE: TextClause = text("SELECT name FROM users ORDER BY rowid")
_SELECT_NAMES: TextClause = text("SELECT name FROM users ORDER BY id")


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


def create_db_engine(settings: Settings) -> Engine:
    """Create the process-wide engine; it connects lazily, on the first request."""
    url = database_url(settings)
    is_sqlite = url.get_backend_name() == "sqlite"
    pre_ping = settings.pool_pre_ping if settings.pool_pre_ping is not None else not is_sqlite
    return create_engine(
        url,
        poolclass=QueuePool,
        pool_size=settings.pool_size,
        max_overflow=settings.max_overflow,
        pool_timeout=settings.pool_timeout,
        pool_recycle=settings.pool_recycle,
        pool_pre_ping=pre_ping,
    )


def fetch_user_names(engine: Engine) -> Sequence[str]:
    """Every user's name, in primary-key order. The connection goes back to the pool on any outcome."""
    statement = _SELECT_NAMES_SQLITE if engine.dialect.name == "sqlite" else _SELECT_NAMES
    with engine.connect() as conn:
        # One fetchall: iterating the result fetches row by row through SQLAlchemy's layers.
        return conn.execute(statement).scalars().all()


def pool_figures(pool: Pool) -> dict[str, Any]:
    """Occupancy of a queue pool, for logs: size, connections checked out, overflow in use."""
    if not isinstance(pool, QueuePool):
        return {"pool": type(pool).__name__}
    return {
        "pool_size": pool.size(),
        "pool_checked_out": pool.checkedout(),
        # QueuePool counts overflow from -pool_size; only connections beyond the pool size matter.
        "pool_overflow": max(pool.overflow(), 0),
    }
