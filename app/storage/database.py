"""The Database: where the app's engine comes from, and the one owner of it.

`Database.open(settings)` picks the source (in the order of the settings that choose it):
a SQLite snapshot downloaded from S3 (DB_SNAPSHOT_S3_URI), a URL read from Secrets Manager
or Parameter Store, DATABASE_URL, else the bundled SQLite file copied to /tmp (the code
directory is read-only on Lambda). `init_app` puts it in `app.extensions["database"]`;
everything else reads `.engine` there and never stores it. An S3 snapshot
(app/storage/snapshot.py) and the bundle's copy (app/storage/bundle.py) look after
themselves; this class chooses between them and hands out the engine.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["DATABASE_KEY", "Database", "DatabaseUnavailableError"]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")


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


class Database:
    """The engine the app serves from now (`engine`), and where it came from (`describe()`)."""

    def __init__(
        self,
        settings: Settings,
        engine: Engine | None,
        fields: dict[str, Any],
        *,
        snapshot: SnapshotSource | None = None,
        bundle: BundleCopy | None = None,
    ) -> None:
        self.settings = settings
        self._engine = engine
        self._fields = fields
        self._snapshot = snapshot
        self._bundle = bundle

    @classmethod
    def open(cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Database:
        """Choose the database and build its engine (no connection yet). `clock` times snapshot refreshes."""
        if settings.db_snapshot_s3_uri is not None:
            snapshot = SnapshotSource(settings, clock=clock)
            snapshot.remove_leftovers()
            # A failed download does not fail the cold start: requests get 503 until a retry succeeds.
            snapshot.refresh_if_due()
            return cls(settings, None, {"database_source": "DB_SNAPSHOT_S3_URI"}, snapshot=snapshot)
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
        return cls(settings, create_db_engine(settings, url, read_budget_seconds), fields, bundle=bundle)

    @property
    def engine(self) -> Engine | None:
        """The engine to serve from now; None only while a configured S3 snapshot has not loaded."""
        return self._snapshot.engine if self._snapshot is not None else self._engine

    def init_app(self, app: Flask) -> None:
        """Serve `app` from this database (the web layer calls before_request with each request's deadline)."""
        app.extensions[DATABASE_KEY] = self

    def before_request(self, deadline: float | None) -> None:
        """Before a request answered by `deadline` (time.monotonic(); None: no bound): an S3
        snapshot refreshes when due, and raises DatabaseUnavailableError while none is loaded."""
        if self._snapshot is not None:
            self._snapshot.before_request(deadline)

    def describe(self) -> dict[str, Any]:
        """Log fields: which setting chose the database and what it is (no password)."""
        if self._snapshot is not None:
            return {**self._fields, **self._snapshot.describe()}
        return dict(self._fields)

    def content_id(self) -> str | None:
        """What identifies the data served now, if nothing can change it underneath: the bundled
        file's hash, or the loaded S3 snapshot's. None: a database others may write to (PostgreSQL,
        a DATABASE_URL file), whose responses are identified by their bodies instead."""
        if self._bundle is not None and self._bundle.sha256 is not None:
            return "bundle:" + self._bundle.sha256
        if self._snapshot is not None and self._snapshot.current is not None:
            return "s3:" + self._snapshot.current.sha256
        return None

    def dispose(self) -> None:
        """Close the pool's connections (and delete a snapshot's file): tests and benchmarks; Lambda just ends."""
        if self._snapshot is not None:
            self._snapshot.dispose()
        engine, self._engine = self._engine, None
        if engine is not None:
            engine.dispose()

    def repair(self, exc: Exception) -> bool:
        """After a failed read: put back a bundled copy that was deleted or replaced; say whether it did.

        Once the pooled connection is recycled, every read would fail until the container died.
        """
        if self._bundle is None or self._engine is None or not self._bundle.restore_if_lost():
            return False
        self._engine.dispose()  # its connections read the old file
        _logger.warning("bundled database copy restored", extra={"fields": {"error": type(exc).__name__}})
        return True

    def before_snapshot(self) -> None:
        """SnapStart, before the snapshot: close every pooled connection and forget the S3 client.

        Whatever the init made is shared by every environment restored from the snapshot; a
        socket would be shared too, and a server would see one connection used by many.
        """
        if self._engine is not None:
            self._engine.dispose()
        if self._snapshot is not None:
            self._snapshot.before_snapshot()
        _logger.info("before snapshot: connections closed", extra={"fields": self.describe()})

    def after_restore(self) -> None:
        """SnapStart, after a restore: new pool, and the /tmp copy checked (or made again) before use."""
        if self._engine is not None:
            self._engine.dispose()
        if self._bundle is not None:
            self._fields["bundle_copied"] = self._bundle.prepare()
        if self._snapshot is not None:
            self._snapshot.after_restore()
        _logger.info("after restore: ready", extra={"fields": self.describe()})
