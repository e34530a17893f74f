"""Download a SQLite snapshot from S3 into a new local file, verified before anyone opens it.

The body is streamed into a temp file beside the target, checked (SQLite header, `PRAGMA
quick_check`, the `users` table present), and only then renamed to a name no engine has
ever opened. A reader therefore sees a complete, verified file or none at all, and a
file an engine has open is never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import sqlite3
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import quote

from app.config import S3Location
from app.storage import aws

__all__ = [
    "SNAPSHOT_DEADLINE",
    "SNAPSHOT_INVALID",
    "SNAPSHOT_WRITE_FAILED",
    "SnapshotError",
    "SnapshotFile",
    "download_snapshot",
    "is_unchanged",
    "remove_snapshot_file",
    "verify_sqlite_file",
]

# Error code of a snapshot that downloaded but is not a usable SQLite database.
SNAPSHOT_INVALID: str = "InvalidSnapshot"
# Error code of a local failure (disk full, /tmp not writable) while storing it.
SNAPSHOT_WRITE_FAILED: str = "LocalWriteFailed"
# Error code of a download given up because the request that started it has no time left.
SNAPSHOT_DEADLINE: str = "DeadlineExceeded"

_SQLITE_HEADER: bytes = b"SQLite format 3\x00"
# The SQLite header is 100 bytes; anything shorter cannot be a database.
_SQLITE_HEADER_SIZE: int = 100
_CHUNK_SIZE: int = 1024 * 1024
_NOT_MODIFIED: int = 304
# `quick_check` reports up to this many problems; the first is enough for the log line.
_QUICK_CHECK_ROWS: int = 1


class SnapshotError(Exception):
    """Raised when the snapshot cannot be downloaded or is not a usable database; `code` says why."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


@dataclass(frozen=True)
class SnapshotFile:
    """A verified snapshot on local disk and the S3 object version it came from."""

    path: Path
    etag: str
    version_id: str | None
    size_bytes: int
    # Download and verification together.
    download_ms: float
    # Of the bytes as downloaded: after a SnapStart restore, what tells the copy is still the same file.
    sha256: str


def download_snapshot(
    s3_client: Any,
    location: S3Location,
    directory: Path,
    name_prefix: str,
    *,
    required_table: str,
    if_none_match: str | None = None,
    deadline: float | None = None,
) -> SnapshotFile | None:
    """Download `location` to a new file `directory/<name_prefix><random>.db`; None if unchanged.

    With `if_none_match` (the ETag of the copy in use) S3 answers 304 Not Modified and
    nothing is downloaded when the object has not changed. Raises SnapshotError for S3
    errors (the code is S3's: NoSuchBucket, NoSuchKey, AccessDenied, ...), transport
    failures, local write failures and invalid files; no file is left behind then.

    `deadline` (time.monotonic()) ends the download with DeadlineExceeded: checked between
    chunks, so it is overrun by at most one read (the client's read timeout, 3 s).
    """
    started = time.perf_counter()
    request: dict[str, Any] = {"Bucket": location.bucket, "Key": location.key}
    if if_none_match is not None:
        request["IfNoneMatch"] = if_none_match
    try:
        response = s3_client.get_object(**request)
    except Exception as exc:
        error = aws.describe_error(exc)
        if error is None:
            raise
        if error.code == str(_NOT_MODIFIED):
            return None
        raise SnapshotError(error.code, error.message) from None

    directory.mkdir(parents=True, exist_ok=True)
    fd, temp_name = tempfile.mkstemp(dir=directory, prefix=f".{name_prefix}", suffix=".tmp")
    temp_path = Path(temp_name)
    digest = hashlib.sha256()
    try:
        # closing(), not `with body`: StreamingBody.__enter__ returns the raw stream, which
        # skips botocore's checks. No fsync: /tmp does not outlive the execution environment.
        with os.fdopen(fd, "wb") as out, contextlib.closing(response["Body"]) as body:
            if deadline is not None:
                _check_deadline(deadline)
            # botocore checks the length (and the checksum, when the object has one) as it reads.
            for chunk in body.iter_chunks(_CHUNK_SIZE):
                out.write(chunk)
                digest.update(chunk)
                if deadline is not None:
                    _check_deadline(deadline)
        verify_sqlite_file(temp_path, required_table=required_table)
        final_path = directory / f"{name_prefix}{uuid.uuid4().hex[:12]}.db"
        os.replace(temp_path, final_path)
    except BaseException as exc:
        remove_snapshot_file(temp_path)
        if isinstance(exc, SnapshotError):
            raise
        error = aws.describe_error(exc) if isinstance(exc, Exception) else None
        if error is not None:
            raise SnapshotError(error.code, error.message) from None
        if isinstance(exc, OSError):
            raise SnapshotError(SNAPSHOT_WRITE_FAILED, f"{exc.strerror or exc} ({directory})") from None
        raise
    finally:
        _remove_sidecars(temp_path)
    return SnapshotFile(
        path=final_path,
        etag=response["ETag"],
        version_id=response.get("VersionId"),
        size_bytes=final_path.stat().st_size,
        download_ms=round((time.perf_counter() - started) * 1000, 3),
        sha256=digest.hexdigest(),
    )


def _check_deadline(deadline: float) -> None:
    if time.monotonic() >= deadline:
        raise SnapshotError(SNAPSHOT_DEADLINE, "the download did not finish in the time the request had")


def is_unchanged(snapshot: SnapshotFile) -> bool:
    """Whether the file still holds the bytes downloaded: same size, same SHA-256 (read whole)."""
    try:
        if snapshot.path.stat().st_size != snapshot.size_bytes:
            return False
        with snapshot.path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest() == snapshot.sha256
    except OSError:
        return False


def verify_sqlite_file(path: Path, *, required_table: str) -> None:
    """Raise SnapshotError (InvalidSnapshot) unless `path` is an intact SQLite database with `required_table`."""
    with path.open("rb") as file:
        header = file.read(_SQLITE_HEADER_SIZE)
    if len(header) < _SQLITE_HEADER_SIZE or not header.startswith(_SQLITE_HEADER):
        raise SnapshotError(SNAPSHOT_INVALID, "not a SQLite database (bad or missing header)")
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True)) as connection:
            # quick_check reads every page (a few ms per MB) but skips the index cross-checks of
            # integrity_check: it catches truncated and corrupted files before they are served.
            problems = connection.execute(f"PRAGMA quick_check({_QUICK_CHECK_ROWS})").fetchall()
            if problems != [("ok",)]:
                raise SnapshotError(SNAPSHOT_INVALID, f"PRAGMA quick_check failed: {problems[0][0]}")
            found = connection.execute(
                "SELECT 1 FROM sqlite_master WHERE type IN ('table', 'view') AND name = ?", (required_table,)
            ).fetchone()
    except sqlite3.DatabaseError as exc:
        raise SnapshotError(SNAPSHOT_INVALID, f"unreadable SQLite database: {exc}") from None
    if found is None:
        raise SnapshotError(SNAPSHOT_INVALID, f"the database has no {required_table!r} table")


def remove_snapshot_file(path: Path) -> None:
    """Delete a snapshot file and the -wal/-shm/-journal files SQLite may have left beside it."""
    path.unlink(missing_ok=True)
    _remove_sidecars(path)


def _remove_sidecars(path: Path) -> None:
    # Opening a WAL-mode file, even read-only, can create -wal and -shm files beside it.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
