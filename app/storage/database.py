"""The database the app serves from: `open_database(settings)` chooses it, once per container.

The source is chosen in the order of the settings that choose it: a SQLite snapshot
downloaded from S3 (DB_SNAPSHOT_S3_URI, app/storage/snapshot.py), a URL read from Secrets
Manager or Parameter Store, DATABASE_URL, else the bundled SQLite file copied to /tmp (the
code directory is read-only on Lambda). Each kind is one object with the `Database`
interface: the web layer and the adapter read `engine`, `content_id` and `refreshes` as
plain attributes on every request, so a warm request on a fixed database runs no code here.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import Engine
from sqlalchemy.engine import URL

from app.config import Settings, parse_database_url
from app.logs import LOGGER_NAME, redact
from app.storage.bundle import BundleCopy
from app.storage.engine import create_db_engine
from app.storage.queries import read_budget_seconds
from app.storage.secret import fetch_database_url
from app.storage.snapshot import DatabaseUnavailableError, SnapshotSource
from app.storage.sqlite_file import InvalidSqliteFileError, SqliteFileBusyError, verify_sqlite_file
from app.storage.urls import password_forms, safe_url, sqlite_file_url, sqlite_read_only_url
from app.types import DATABASE_KEY

__all__ = ["DATABASE_KEY", "Database", "DatabaseUnavailableError", "FixedDatabase", "open_database"]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")


class Database(Protocol):
    """What the rest of the app uses of the database it serves from."""

    @property
    def engine(self) -> Engine | None:
        """The engine to serve from now; None only while an S3 snapshot has not loaded."""

    @property
    def content_id(self) -> str | None:
        """What identifies the data served now, if nothing can change it underneath (the bundled
        file's hash, a loaded S3 snapshot's); None for a database others may write to."""

    @property
    def refreshes(self) -> bool:
        """Whether `before_request` has work to do (an S3 snapshot); the web layer skips it otherwise."""

    def before_request(self, deadline: float | None) -> None:
        """Before a request answered by `deadline` (time.monotonic(); None: no bound); may raise
        DatabaseUnavailableError."""

    def repair(self, exc: Exception) -> bool:
        """After a failed read: put right what made it fail, if this database can; say whether it did."""

    def describe(self) -> dict[str, Any]:
        """Log fields: which setting chose the database and what it is (no password)."""

    def dispose(self) -> None:
        """Close the pool's connections (and delete a downloaded file): tests and benchmarks; Lambda just ends."""

    def before_snapshot(self) -> None:
        """SnapStart, before the snapshot: close every pooled connection (app/snapstart.py)."""

    def after_restore(self) -> None:
        """SnapStart, after a restore: a new pool, and a /tmp copy checked again before use."""


def open_database(settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Database:
    """Choose the database and build its engine (no connection yet). `clock` times snapshot refreshes."""
    if settings.db_snapshot_s3_uri is not None:
        snapshot = SnapshotSource(settings, clock=clock)
        snapshot.remove_leftovers()
        # A failed download does not fail the cold start: requests get 503 until a retry succeeds.
        snapshot.refresh_if_due()
        return snapshot
    from_secret = fetch_database_url(settings)
    bundle: BundleCopy | None = None
    copied: bool | None = None
    if from_secret is not None:
        url, source = from_secret
    elif settings.database_url is not None:
        url, source = parse_database_url(settings.database_url), "DATABASE_URL"
        redact(*password_forms(url))
    else:
        bundle = BundleCopy(settings.bundled_db_path, settings.sqlite_copy_path)
        copied = bundle.prepare()
        url, source = sqlite_read_only_url(settings.sqlite_copy_path), "bundle"
    fields = {"database_source": source, "database": safe_url(url), "bundle_copied": copied}
    if bundle is None and url.get_backend_name() == "sqlite":
        url = _checked_sqlite_url(url, source)
    return FixedDatabase(create_db_engine(settings, url, read_budget_seconds), fields, bundle=bundle)


def _checked_sqlite_url(url: URL, source: str) -> URL:
    """The URL a SQLite database from `source` (DATABASE_URL, a secret) is opened with, once its
    file is checked: present (never created), and a schema GET /users can read. Fails the cold
    start otherwise, with one line naming the setting, the file and the problem."""
    opened, path = sqlite_file_url(url)
    try:
        if path is None:
            raise InvalidSqliteFileError("an in-memory SQLite database has no 'users' table")
        # No quick_check: others may write this file, and it may be large.
        verify_sqlite_file(path, quick_check=False)
    except InvalidSqliteFileError as exc:
        problem = f"{source}: SQLite database {path or ':memory:'}: {exc}"
        _logger.error("database invalid", extra={"fields": {"database_source": source, "problem": problem}})
        raise InvalidSqliteFileError(problem) from None
    except SqliteFileBusyError as exc:
        # A writer at work is transient: requests wait for it, or get 503, as on a warm container.
        _logger.warning("database not checked", extra={"fields": {"database_source": source, "problem": str(exc)}})
    return opened


class FixedDatabase:
    """One engine for the container's life: the bundled copy, DATABASE_URL or a secret's URL."""

    refreshes: bool = False

    def __init__(self, engine: Engine, fields: dict[str, Any], *, bundle: BundleCopy | None = None) -> None:
        self.engine: Engine | None = engine
        self._fields = fields
        self._bundle = bundle
        # The bundled file never changes while it is served; any other may be written by others.
        self.content_id: str | None = None
        if bundle is not None and bundle.sha256 is not None:
            self.content_id = "bundle:" + bundle.sha256

    def before_request(self, deadline: float | None) -> None:
        """Nothing to do: the engine is fixed (`refreshes` is False, so the web layer does not call this)."""

    def describe(self) -> dict[str, Any]:
        return dict(self._fields)

    def dispose(self) -> None:
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.dispose()

    def repair(self, exc: Exception) -> bool:
        """Put back a bundled copy that was deleted or replaced; say whether it did.

        Once the pooled connection is recycled, every read would fail until the container died.
        """
        if self._bundle is None or self.engine is None or not self._bundle.restore_if_lost():
            return False
        self.engine.dispose()  # its connections read the old file
        _logger.warning("bundled database copy restored", extra={"fields": {"error": type(exc).__name__}})
        return True

    def before_snapshot(self) -> None:
        # Whatever the init made is shared by every environment restored from the snapshot; a
        # socket would be shared too, and a server would see one connection used by many.
        if self.engine is not None:
            self.engine.dispose()

    def after_restore(self) -> None:
        if self.engine is not None:
            self.engine.dispose()
        if self._bundle is not None:
            self._fields["bundle_copied"] = self._bundle.prepare()
