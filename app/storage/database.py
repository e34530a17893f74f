"""The Database: where the app's engine comes from, and the one owner of it.

`Database.open(settings)` picks the source (in the order of the settings that choose it):
a SQLite snapshot downloaded from S3 (DB_SNAPSHOT_S3_URI), a URL read from Secrets Manager
or Parameter Store, DATABASE_URL, else the bundled SQLite file copied to /tmp (the code
directory is read-only on Lambda). `init_app` puts it in `app.extensions["database"]`;
everything else reads `.engine` there and never stores it.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from flask import request
from sqlalchemy import Engine
from sqlalchemy.engine import URL
from sqlalchemy.pool import Pool

from app.config import Settings, parse_database_url
from app.logs import LOGGER_NAME, redact
from app.storage.bundle import BundleInvalidError, ensure_local_copy, verify_bundle
from app.storage.engine import create_db_engine, password_forms, safe_url, sqlite_file_url, sqlite_read_only_url
from app.storage.queries import remaining_seconds
from app.storage.s3_snapshot import SnapshotFile
from app.storage.secret import fetch_database_url
from app.storage.snapshot import SnapshotSource
from app.storage.sqlite_file import (
    InvalidSqliteFileError,
    SqliteFileBusyError,
    remove_sqlite_file,
    verify_sqlite_file,
)

if TYPE_CHECKING:
    from flask import Flask

__all__ = ["DATABASE_KEY", "Database", "DatabaseUnavailableError"]

# Key of the Database in `Flask.extensions`.
DATABASE_KEY: str = "database"

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")
# Of a request's time, what a warm refresh of the S3 snapshot may spend downloading.
REFRESH_SHARE_OF_BUDGET: float = 0.5


class DatabaseUnavailableError(Exception):
    """Raised before a request when there is no database to serve it from yet (an S3 snapshot still loading)."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("no database loaded yet")
        self.retry_after_seconds = retry_after_seconds


def _verify_bundle_copy(settings: Settings) -> None:
    try:
        verify_bundle(settings.sqlite_copy_path)
    except BundleInvalidError as exc:
        # A deploy mistake, not a transient outage: fail the cold start, saying which file and why.
        problem = f"bundled database {settings.bundled_db_path}: {exc}"
        fields = {"bundled_db_path": str(settings.bundled_db_path), "problem": problem}
        _logger.error("bundled database invalid", extra={"fields": fields})
        raise BundleInvalidError(problem) from None


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

    def __init__(self, settings: Settings, engine: Engine | None, fields: dict[str, Any]) -> None:
        self.settings = settings
        # None only while a configured S3 snapshot has not loaded.
        self.engine = engine
        self._fields = fields
        self._snapshot: SnapshotSource | None = None
        self._serves_bundle = fields.get("database_source") == "bundle"
        # The bundled file never changes while the code is deployed: hashed once, at cold start.
        self._bundle_sha256: str | None = None
        if self._serves_bundle:
            with settings.bundled_db_path.open("rb") as bundle:
                self._bundle_sha256 = hashlib.file_digest(bundle, "sha256").hexdigest()
        self._refreshing = threading.Lock()
        # The pool a swap replaced: a request that was using it returns its connection there
        # afterwards, so it is disposed once more by the next request.
        self._retired_pool: Pool | None = None

    @classmethod
    def open(cls, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> Database:
        """Choose the database and build its engine (no connection yet). `clock` times snapshot refreshes."""
        if settings.db_snapshot_s3_uri is not None:
            database = cls(settings, None, {"database_source": "DB_SNAPSHOT_S3_URI"})
            database._snapshot = SnapshotSource(
                settings.db_snapshot_s3_uri,
                settings.sqlite_copy_path,
                settings.db_snapshot_refresh_seconds,
                clock=clock,
            )
            database._snapshot.remove_leftovers()
            # A failed download does not fail the cold start: requests get 503 until a retry succeeds.
            database.refresh_if_due()
            return database
        from_secret = fetch_database_url(settings)
        copied: bool | None = None
        if from_secret is not None:
            url, source = from_secret
        elif settings.database_url is not None:
            url, source = parse_database_url(settings.database_url), "DATABASE_URL"
            redact(*password_forms(url))
        else:
            copied = ensure_local_copy(settings.bundled_db_path, settings.sqlite_copy_path)
            _verify_bundle_copy(settings)
            url, source = sqlite_read_only_url(settings.sqlite_copy_path), "bundle"
        fields = {"database_source": source, "database": safe_url(url), "bundle_copied": copied}
        if copied is None and url.get_backend_name() == "sqlite":
            url = _checked_sqlite_url(url, source)
        return cls(settings, create_db_engine(settings, url), fields)

    def init_app(self, app: Flask) -> None:
        """Serve `app` from this database; a snapshot is looked for before requests when due."""
        app.extensions[DATABASE_KEY] = self
        if self._snapshot is not None:
            app.before_request(self._before_request)

    def describe(self) -> dict[str, Any]:
        """Log fields: which setting chose the database and what it is (no password)."""
        if self._snapshot is not None:
            return {**self._fields, **self._snapshot.describe()}
        return dict(self._fields)

    def content_id(self) -> str | None:
        """What identifies the data served now, if nothing can change it underneath: the bundled
        file's hash, or the loaded S3 snapshot's. None: a database others may write to (PostgreSQL,
        a DATABASE_URL file), whose responses are identified by their bodies instead."""
        if self._bundle_sha256 is not None:
            return "bundle:" + self._bundle_sha256
        if self._snapshot is not None and self._snapshot.current is not None:
            return "s3:" + self._snapshot.current.sha256
        return None

    def refresh_if_due(self, context: Any = None) -> None:
        """Swap in a newer S3 snapshot (or retry a failed cold start) when it is time; never raises.

        `context`: the Lambda context of the request asking (None: no bound but the S3
        client's). A refresh may take half of the time it leaves, since a copy is serving and
        the request still has to read; a first load all of it, since without one the request
        can only get a 503.
        """
        snapshot = self._snapshot
        if snapshot is None or not snapshot.due():
            return
        # One thread checks; the others go on serving the current copy meanwhile.
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            if snapshot.due():
                seconds_left = remaining_seconds(context)
                if seconds_left is not None and snapshot.current is not None:
                    seconds_left *= REFRESH_SHARE_OF_BUDGET
                fetched = snapshot.fetch(seconds_left)
                if fetched is not None:
                    self._swap_in(snapshot, fetched)
        finally:
            self._refreshing.release()

    def dispose(self) -> None:
        """Close the pool's connections (and delete a snapshot's file): tests and benchmarks; Lambda just ends."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.dispose()
        if self._snapshot is not None and self._snapshot.current is not None:
            remove_sqlite_file(self._snapshot.current.path)
            self._snapshot.current = None

    def repair(self, exc: Exception) -> bool:
        """After a failed read: put back a bundled copy that was deleted or replaced; say whether it did.

        Lambda may clean /tmp, or a neighbour overwrite it, while warm: once the pooled
        connection is recycled, every read would fail until the container died.
        """
        if not self._serves_bundle or self.engine is None:
            return False
        settings = self.settings
        try:
            copied = ensure_local_copy(settings.bundled_db_path, settings.sqlite_copy_path)
        except OSError:
            return False
        if not copied:
            return False  # the copy is intact: the error has another cause
        _verify_bundle_copy(settings)
        self.engine.dispose()  # its connections read the old file
        _logger.warning("bundled database copy restored", extra={"fields": {"error": type(exc).__name__}})
        return True

    def before_snapshot(self) -> None:
        """SnapStart, before the snapshot: close every pooled connection and forget the S3 client.

        Whatever the init made is shared by every environment restored from the snapshot; a
        socket would be shared too, and a server would see one connection used by many.
        """
        if self.engine is not None:
            self.engine.dispose()
        retired, self._retired_pool = self._retired_pool, None
        if retired is not None:  # a pool a snapshot swap replaced, if a request used it since
            retired.dispose()
        if self._snapshot is not None:
            self._snapshot.forget_client()
        _logger.info("before snapshot: connections closed", extra={"fields": self.describe()})

    def after_restore(self) -> None:
        """SnapStart, after a restore: new pool, and the /tmp copy checked (or made again) before use."""
        if self.engine is not None:
            self.engine.dispose()
        if self._serves_bundle:
            copied = ensure_local_copy(self.settings.bundled_db_path, self.settings.sqlite_copy_path)
            _verify_bundle_copy(self.settings)
            self._fields["bundle_copied"] = copied
        if self._snapshot is not None:
            # A restored environment asks S3 whether the snapshot it was made with is current,
            # and downloads it again (503 until then) if its copy is not the file downloaded.
            self._snapshot.forget_client()
            if self._snapshot.drop_changed_copy():
                self.engine = None
                _logger.warning("snapshot copy changed since the snapshot: downloading it again")
            self._snapshot.check_now()
        _logger.info("after restore: ready", extra={"fields": self.describe()})

    def _before_request(self) -> None:
        retired, self._retired_pool = self._retired_pool, None
        if retired is not None:
            retired.dispose()
        self.refresh_if_due(request.environ.get("serverless.context"))
        if self.engine is None:
            assert self._snapshot is not None
            raise DatabaseUnavailableError(self._snapshot.retry_after_seconds())

    def _swap_in(self, snapshot: SnapshotSource, fetched: SnapshotFile) -> None:
        try:
            engine = create_db_engine(self.settings, sqlite_read_only_url(fetched.path))
        except Exception as exc:
            remove_sqlite_file(fetched.path)
            snapshot.failed(exc)
            return
        old_engine, old_file = self.engine, snapshot.current
        # No lock: a request that already checked out a connection from the old engine keeps
        # it (dispose() closes only idle ones) and, on POSIX, keeps reading the unlinked file.
        self.engine, snapshot.current = engine, fetched
        if old_engine is not None:
            self._retired_pool = old_engine.pool
            old_engine.dispose()
        if old_file is not None:
            remove_sqlite_file(old_file.path)
        _logger.info(
            "snapshot loaded",
            extra={
                "fields": {
                    **snapshot.describe(),
                    "snapshot_size_bytes": fetched.size_bytes,
                    "snapshot_download_ms": fetched.download_ms,
                    "replaced_etag": None if old_file is None else old_file.etag,
                }
            },
        )
