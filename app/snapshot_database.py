"""The SQLite snapshot from S3 this process serves: loaded at cold start, refreshed between requests.

Lifecycle (README, "Database snapshot from S3"):
- Cold start: download and verify the object, then build an engine on it. If that fails
  the app still starts: every request is answered 503 JSON, and the download is retried
  on later requests, at most once per 1, 2, 4, ... up to 60 seconds.
- Warm: with DB_SNAPSHOT_REFRESH_SECONDS > 0, a request arriving that long after the last
  check first asks S3 for the object if its ETag changed (a conditional GET: an unchanged
  object costs one request and no download). A new object goes to a new file with a new
  engine; the app's engine reference is swapped once no request is using the old engine,
  which is then disposed and its file deleted. A failed refresh is logged and the
  previous copy keeps serving; the next check is one period later.
The check runs before the request reaches Flask (WSGI middleware), so it covers Lambda
invocations and the threaded local server alike, and no request holds the engine then.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine
from werkzeug.wrappers import Response

from app import aws
from app.config import Settings
from app.db import ENGINE_KEY, create_db_engine, sqlite_read_only_url
from app.logs import LOGGER_NAME
from app.s3_snapshot import SnapshotError, SnapshotFile, download_snapshot, remove_snapshot_file
from app.swap_lock import SwapLock

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from flask import Flask

__all__ = ["RETRY_INITIAL_SECONDS", "RETRY_MAX_SECONDS", "SNAPSHOT_KEY", "SnapshotDatabase"]

# Key of the SnapshotDatabase in `Flask.extensions`.
SNAPSHOT_KEY: str = "db_snapshot"
# Backoff between download attempts while there is no good copy: doubles up to the maximum.
RETRY_INITIAL_SECONDS: float = 1.0
RETRY_MAX_SECONDS: float = 60.0
# A snapshot without the table GET /users reads would only fail every request.
REQUIRED_TABLE: str = "users"
# Same body as app/errors.py answers a database error with.
UNAVAILABLE_BODY: dict[str, str] = {
    "error": "database_unavailable",
    "message": "The database is unavailable. Retry shortly.",
}

_logger = logging.getLogger(f"{LOGGER_NAME}.snapshot")


@dataclass(frozen=True)
class _Generation:
    """One downloaded snapshot and the engine reading it."""

    engine: Engine
    snapshot: SnapshotFile


class SnapshotDatabase:
    """The current snapshot and its engine; `start()` loads it, `attach(app)` serves it."""

    def __init__(self, settings: Settings, *, clock: Callable[[], float] = time.monotonic) -> None:
        if settings.db_snapshot_s3_uri is None:
            raise ValueError("SnapshotDatabase needs settings.db_snapshot_s3_uri")
        self._settings = settings
        self._location = settings.db_snapshot_s3_uri
        self._directory = settings.sqlite_copy_path.parent
        # The pid in the name tells a later process whose files it may remove (see start()).
        self._file_stem = f"{settings.sqlite_copy_path.stem}.snapshot-"
        self._file_prefix = f"{self._file_stem}{os.getpid()}-"
        self._refresh_seconds = settings.db_snapshot_refresh_seconds
        self._clock = clock
        self._s3_client: Any = None  # created by the first download, never at import
        self._current: _Generation | None = None
        self._app: Flask | None = None
        self._next_attempt_at = -math.inf
        self._retry_delay = RETRY_INITIAL_SECONDS
        self._refreshing = threading.Lock()
        # Public for the threaded local server's tests: requests share it, a swap takes it whole.
        self.swap_lock = SwapLock()

    @property
    def engine(self) -> Engine | None:
        """The engine on the current snapshot; None until one has loaded."""
        current = self._current
        return None if current is None else current.engine

    @property
    def snapshot(self) -> SnapshotFile | None:
        """The snapshot being served; None until one has loaded."""
        current = self._current
        return None if current is None else current.snapshot

    def start(self) -> bool:
        """Cold start: remove files earlier processes left, then load the snapshot; say whether it loaded."""
        self._remove_leftovers()
        self._attempt()
        return self._current is not None

    def attach(self, app: Flask) -> None:
        """Serve `app` from the snapshot: publish the engine and check for refreshes before each request."""
        self._app = app
        app.extensions[SNAPSHOT_KEY] = self
        app.extensions[ENGINE_KEY] = self.engine
        app.wsgi_app = _SnapshotMiddleware(self, app.wsgi_app)  # type: ignore[method-assign]

    def refresh_if_due(self) -> None:
        """Download a newer snapshot (or retry a failed cold start) if it is time; never raises."""
        if self._clock() < self._next_attempt_at:
            return
        # One thread checks; the others go on serving the current copy meanwhile.
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            if self._clock() >= self._next_attempt_at:
                self._attempt()
        finally:
            self._refreshing.release()

    @contextmanager
    def serving(self) -> Iterator[Engine | None]:
        """Hold the current engine for one request: no swap disposes it until the block ends."""
        with self.swap_lock.shared():
            yield self.engine

    def retry_after_seconds(self) -> int:
        """Whole seconds until the next download attempt (at least 1), for Retry-After."""
        wait = self._next_attempt_at - self._clock()
        return max(1, math.ceil(wait)) if math.isfinite(wait) else 1

    def describe(self) -> dict[str, Any]:
        """Log fields naming the object and the copy in use."""
        snapshot = self.snapshot
        return {
            "database": self._location.uri,
            "snapshot_etag": None if snapshot is None else snapshot.etag,
            "snapshot_version_id": None if snapshot is None else snapshot.version_id,
            "snapshot_refresh_seconds": self._refresh_seconds,
        }

    def close(self) -> None:
        """Dispose the engine and delete its file (tests; a Lambda process just ends)."""
        with self.swap_lock.exclusive():
            current, self._current = self._current, None
            if self._app is not None:
                self._app.extensions[ENGINE_KEY] = None
            if current is not None:
                current.engine.dispose()
        if current is not None:
            remove_snapshot_file(current.snapshot.path)

    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = aws.client("s3")
        return self._s3_client

    def _attempt(self) -> None:
        current = self._current
        started_at = self._clock()
        try:
            fetched = download_snapshot(
                self._s3(),
                self._location,
                self._directory,
                self._file_prefix,
                required_table=REQUIRED_TABLE,
                if_none_match=None if current is None else current.snapshot.etag,
            )
            if fetched is not None:
                self._swap_in(fetched)
        except Exception as exc:
            # Whatever failed, the request that triggered the check must still be answered.
            self._failed(exc, started_at)
            return
        self._retry_delay = RETRY_INITIAL_SECONDS
        self._next_attempt_at = started_at + self._refresh_seconds if self._refresh_seconds else math.inf
        if fetched is None:
            _logger.debug("snapshot unchanged", extra={"fields": self.describe()})

    def _swap_in(self, fetched: SnapshotFile) -> None:
        try:
            engine = create_db_engine(self._settings, sqlite_read_only_url(fetched.path))
        except BaseException:
            remove_snapshot_file(fetched.path)
            raise
        with self.swap_lock.exclusive():
            # No request is using any engine now: swap, then dispose the old pool's connections.
            old, self._current = self._current, _Generation(engine, fetched)
            if self._app is not None:
                self._app.extensions[ENGINE_KEY] = engine
            if old is not None:
                old.engine.dispose()
        if old is not None:
            remove_snapshot_file(old.snapshot.path)
        _logger.info(
            "snapshot loaded",
            extra={
                "fields": {
                    **self.describe(),
                    "snapshot_size_bytes": fetched.size_bytes,
                    "snapshot_download_ms": fetched.download_ms,
                    "replaced_etag": None if old is None else old.snapshot.etag,
                }
            },
        )

    def _failed(self, exc: Exception, started_at: float) -> None:
        if self._current is None:
            delay = self._retry_delay
            self._retry_delay = min(delay * 2, RETRY_MAX_SECONDS)
        else:
            delay = float(self._refresh_seconds)
        self._next_attempt_at = started_at + delay
        fields = {
            "s3_uri": self._location.uri,
            "error_code": exc.code if isinstance(exc, SnapshotError) else type(exc).__name__,
            "error_message": exc.message if isinstance(exc, SnapshotError) else str(exc),
            # What requests get meanwhile: the previous good copy, or 503.
            "serving_etag": None if self._current is None else self._current.snapshot.etag,
            "retry_in_seconds": delay,
        }
        # A traceback only helps for the unexpected; an S3 error code says it all.
        known = isinstance(exc, SnapshotError)
        _logger.error("snapshot download failed", exc_info=None if known else exc, extra={"fields": fields})

    def _remove_leftovers(self) -> None:
        # On Lambda one process owns /tmp, but a restarted runtime finds the files of the one
        # before it; locally, two servers may share a directory, so spare live processes' files.
        pattern = re.compile(rf"\.?{re.escape(self._file_stem)}(\d+)-")
        if not self._directory.is_dir():
            return
        for path in self._directory.iterdir():
            match = pattern.match(path.name)
            if match is not None and (int(match[1]) == os.getpid() or not _process_alive(int(match[1]))):
                path.unlink(missing_ok=True)


class _SnapshotMiddleware:
    """WSGI middleware: refresh between requests, then serve from the current snapshot or answer 503."""

    def __init__(self, database: SnapshotDatabase, app: WSGIApplication) -> None:
        self.database = database
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.database.refresh_if_due()
        # Flask runs the view (and its query) inside this call; the body it returns is built.
        with self.database.serving() as engine:
            if engine is None:
                return _unavailable(self.database.retry_after_seconds())(environ, start_response)
            return self.app(environ, start_response)


def _unavailable(retry_after_seconds: int) -> Response:
    return Response(
        json.dumps(UNAVAILABLE_BODY),
        status=503,
        mimetype="application/json",
        headers={"Retry-After": str(retry_after_seconds)},
    )


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True
