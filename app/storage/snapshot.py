"""Which SQLite snapshot from S3 this process serves, and when to look for a newer one.

The lifecycle (cold start, retries, warm refresh by conditional GET) is docs/aws.md
("Database snapshot from S3"). This module owns all of it: the schedule, the file in use, the engine on it, the swap to a
newer one and the pool a swap retired. It is the app's `Database` (app/storage/database.py)
when DB_SNAPSHOT_S3_URI is set.
"""

from __future__ import annotations

import logging
import math
import os
import re
import threading
import time
from collections.abc import Callable
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.pool import Pool

from app.config import Settings
from app.logs import LOGGER_NAME
from app.storage import aws
from app.storage.aws import AwsError
from app.storage.engine import create_db_engine
from app.storage.queries import MIN_BUDGET_SECONDS, read_budget_seconds, seconds_left
from app.storage.s3_snapshot import SnapshotFile, download_snapshot, is_unchanged
from app.storage.sqlite_file import remove_sqlite_file
from app.storage.urls import sqlite_read_only_url

__all__ = [
    "RETRY_INITIAL_SECONDS",
    "RETRY_MAX_SECONDS",
    "DatabaseUnavailableError",
    "SnapshotSource",
    "process_alive",
]

# Backoff between download attempts while there is no good copy: doubles up to the maximum.
RETRY_INITIAL_SECONDS: float = 1.0
RETRY_MAX_SECONDS: float = 60.0
# Of a request's time, what a warm refresh of the S3 snapshot may spend downloading.
REFRESH_SHARE_OF_BUDGET: float = 0.5

_logger = logging.getLogger(f"{LOGGER_NAME}.snapshot")


class DatabaseUnavailableError(Exception):
    """Raised before a request when there is no database to serve it from yet (an S3 snapshot still loading)."""

    def __init__(self, retry_after_seconds: int) -> None:
        super().__init__("no database loaded yet")
        self.retry_after_seconds = retry_after_seconds


class SnapshotSource:
    """The S3 object, the verified local copy in use and its engine, and the download schedule.

    The one writer of `current` and `engine`: a refresh swaps both.
    """

    # The web layer calls before_request on every request: a refresh may be due.
    refreshes: bool = True

    def __init__(self, settings: Settings, *, clock: Callable[[], float]) -> None:
        location = settings.db_snapshot_s3_uri
        assert location is not None
        copy_path = settings.sqlite_copy_path
        self.settings = settings
        self.location = location
        self.refresh_seconds = settings.db_snapshot_refresh_seconds
        self.current: SnapshotFile | None = None
        # None until a snapshot has loaded.
        self.engine: Engine | None = None
        self._refreshing = threading.Lock()
        # The pool a swap replaced: a request that was using it returns its connection there
        # afterwards, so it is disposed once more by the next request (or before a SnapStart snapshot).
        self._retired_pool: Pool | None = None
        self._directory = copy_path.parent
        # The pid in the name tells a later process whose files it may remove (see remove_leftovers).
        self._file_stem = f"{copy_path.stem}.snapshot-"
        self._file_prefix = f"{self._file_stem}{os.getpid()}-"
        self._clock = clock
        self._s3_client: Any = None  # created by the first download, never at import
        self._next_attempt_at = -math.inf
        self._retry_delay = RETRY_INITIAL_SECONDS

    def before_request(self, deadline: float | None) -> None:
        """Close a retired pool, refresh when due, and raise DatabaseUnavailableError while nothing is loaded."""
        retired, self._retired_pool = self._retired_pool, None
        if retired is not None:
            retired.dispose()
        self.refresh_if_due(deadline)
        if self.engine is None:
            raise DatabaseUnavailableError(self.retry_after_seconds())

    @property
    def content_id(self) -> str | None:
        """The loaded snapshot's hash: responses from it stay the same until the next swap."""
        return None if self.current is None else "s3:" + self.current.sha256

    def repair(self, exc: Exception) -> bool:
        """Nothing to put right here: a failed read is answered as it is; the next refresh may help."""
        return False

    def refresh_if_due(self, deadline: float | None = None) -> None:
        """Swap in a newer S3 snapshot (or retry a failed cold start) when it is time; never raises.

        `deadline`: when the request asking must be answered (None: no bound but the S3
        client's). A refresh may take half of the time it leaves, since a copy is serving and
        the request still has to read; a first load all of it, since without one the request
        can only get a 503.
        """
        if not self.due():
            return
        # One thread checks; the others go on serving the current copy meanwhile.
        if not self._refreshing.acquire(blocking=False):
            return
        try:
            if self.due():
                seconds = None if deadline is None else max(seconds_left(deadline), MIN_BUDGET_SECONDS)
                if seconds is not None and self.current is not None:
                    seconds *= REFRESH_SHARE_OF_BUDGET
                fetched = self.fetch(seconds)
                if fetched is not None:
                    self._swap_in(fetched)
        finally:
            self._refreshing.release()

    def _swap_in(self, fetched: SnapshotFile) -> None:
        try:
            engine = create_db_engine(self.settings, sqlite_read_only_url(fetched.path), read_budget_seconds)
        except Exception as exc:
            remove_sqlite_file(fetched.path)
            self.failed(exc)
            return
        old_engine, old_file = self.engine, self.current
        # No lock: a request that already checked out a connection from the old engine keeps
        # it (dispose() closes only idle ones) and, on POSIX, keeps reading the unlinked file.
        self.engine, self.current = engine, fetched
        if old_engine is not None:
            self._retired_pool = old_engine.pool
            old_engine.dispose()
        if old_file is not None:
            remove_sqlite_file(old_file.path)
        _logger.info(
            "snapshot loaded",
            extra={
                "fields": {
                    **self.describe(),
                    "snapshot_size_bytes": fetched.size_bytes,
                    "snapshot_download_ms": fetched.download_ms,
                    "replaced_etag": None if old_file is None else old_file.etag,
                }
            },
        )

    def dispose(self) -> None:
        """Close the engine's connections and delete the copy: tests and benchmarks; Lambda just ends."""
        engine, self.engine = self.engine, None
        if engine is not None:
            engine.dispose()
        if self.current is not None:
            remove_sqlite_file(self.current.path)
            self.current = None

    def before_snapshot(self) -> None:
        """SnapStart, before the snapshot: close every pooled connection (a retired pool's too), forget the S3 client."""
        if self.engine is not None:
            self.engine.dispose()
        retired, self._retired_pool = self._retired_pool, None
        if retired is not None:
            retired.dispose()
        self.forget_client()

    def after_restore(self) -> None:
        """SnapStart, after a restore: ask S3 again, and download again (503 until then) if the copy changed."""
        if self.engine is not None:
            self.engine.dispose()
        self.forget_client()
        if self._drop_changed_copy():
            _logger.warning("snapshot copy changed since the snapshot: downloading it again")
        self.check_now()

    def due(self) -> bool:
        """Whether it is time to look for a (newer) snapshot."""
        return self._clock() >= self._next_attempt_at

    def fetch(self, seconds: float | None = None) -> SnapshotFile | None:
        """A newly downloaded, verified snapshot file; None when unchanged or failed (logged). Never raises.

        `seconds` bounds the download (None: only the client's timeouts do, as at a cold start).
        """
        started_at = self._clock()
        try:
            fetched = download_snapshot(
                self._s3(),
                self.location,
                self._directory,
                self._file_prefix,
                if_none_match=None if self.current is None else self.current.etag,
                deadline=None if seconds is None else time.monotonic() + seconds,
            )
        except Exception as exc:
            # Whatever failed, the request that triggered the check must still be answered.
            self.failed(exc, started_at)
            return None
        self._retry_delay = RETRY_INITIAL_SECONDS
        self._next_attempt_at = started_at + self.refresh_seconds if self.refresh_seconds else math.inf
        if fetched is None:
            _logger.debug("snapshot unchanged", extra={"fields": self.describe()})
        return fetched

    def failed(self, exc: Exception, started_at: float | None = None) -> None:
        """Log a failed download (or a file that could not be served) and schedule the next attempt."""
        if started_at is None:
            started_at = self._clock()
        if self.current is None:
            delay = self._retry_delay
            self._retry_delay = min(delay * 2, RETRY_MAX_SECONDS)
        else:
            delay = float(self.refresh_seconds)
        self._next_attempt_at = started_at + delay
        known = isinstance(exc, AwsError)
        fields = {
            "s3_uri": self.location.uri,
            "error_code": exc.code if isinstance(exc, AwsError) else type(exc).__name__,
            "error_message": exc.message if isinstance(exc, AwsError) else str(exc),
            # What requests get meanwhile: the previous good copy, or 503.
            "serving_etag": None if self.current is None else self.current.etag,
            "retry_in_seconds": delay,
        }
        # A traceback only helps for the unexpected; an S3 error code says it all.
        _logger.error("snapshot download failed", exc_info=None if known else exc, extra={"fields": fields})

    def retry_after_seconds(self) -> int:
        """Whole seconds until the next download attempt (at least 1), for Retry-After."""
        wait = self._next_attempt_at - self._clock()
        return max(1, math.ceil(wait)) if math.isfinite(wait) else 1

    def describe(self) -> dict[str, Any]:
        """Log fields naming the object and the copy in use."""
        return {
            "database_source": "DB_SNAPSHOT_S3_URI",
            "database": self.location.uri,
            "snapshot_etag": None if self.current is None else self.current.etag,
            "snapshot_version_id": None if self.current is None else self.current.version_id,
            "snapshot_refresh_seconds": self.refresh_seconds,
        }

    def remove_leftovers(self) -> None:
        """Delete snapshot files of processes that are gone (and our own pid's, from before a restart)."""
        # On Lambda one process owns /tmp, but a restarted runtime finds the files of the one
        # before it; locally, two servers may share a directory, so spare live processes' files.
        pattern = re.compile(rf"\.?{re.escape(self._file_stem)}(\d+)-")
        if not self._directory.is_dir():
            return
        for path in self._directory.iterdir():
            match = pattern.match(path.name)
            if match is not None and (int(match[1]) == os.getpid() or not process_alive(int(match[1]))):
                path.unlink(missing_ok=True)

    def forget_client(self) -> None:
        """Drop the S3 client (and its connections); the next download makes a new one."""
        self._s3_client = None

    def _drop_changed_copy(self) -> bool:
        """Forget (and delete) the copy in use if its file is no longer the one downloaded; say whether it did.

        After a SnapStart restore: the copy came with the snapshot, and a copy deleted or
        replaced since must not be trusted, nor kept by S3 answering "not modified".
        """
        current = self.current
        if current is None or is_unchanged(current):
            return False
        remove_sqlite_file(current.path)
        self.current = None
        if self.engine is not None:
            self.engine.dispose()
            self.engine = None
        self._retry_delay = RETRY_INITIAL_SECONDS
        return True

    def check_now(self) -> None:
        """Make the next request look for a newer snapshot."""
        self._next_attempt_at = -math.inf

    def _s3(self) -> Any:
        if self._s3_client is None:
            self._s3_client = aws.client("s3")
        return self._s3_client


def process_alive(pid: int) -> bool:
    """Whether a process with this pid runs (someone else's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # alive, someone else's
    return True
