"""The engine factory: one pooled engine per process, and how its URL is shown in logs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus

from sqlalchemy import Engine, create_engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool, QueuePool

from app.config import Settings

__all__ = ["create_db_engine", "password_forms", "safe_url", "sqlite_read_only_url"]


def sqlite_read_only_url(path: Path) -> URL:
    """URL of a SQLite file opened read-only: the /tmp copy is a snapshot, not a store."""
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})


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


def create_db_engine(settings: Settings, url: URL) -> Engine:
    """Create the process-wide engine on `url`; it connects lazily, on the first request."""
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
