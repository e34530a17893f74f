"""Download a SQLite snapshot from S3 into a new local file, verified before anyone opens it.

The body is streamed into a temp file beside the target, checked (app/storage/sqlite_file.py:
header, `PRAGMA quick_check`, the `users` schema), and only then renamed to a name no engine has
ever opened. A reader therefore sees a complete, verified file or none at all, and a
file an engine has open is never overwritten.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app.config import S3Location
from app.storage import aws
from app.storage.aws import AwsError
from app.storage.sqlite_file import InvalidSqliteFileError, remove_sidecars, remove_sqlite_file, verify_sqlite_file

__all__ = [
    "SNAPSHOT_DEADLINE",
    "SNAPSHOT_INVALID",
    "SNAPSHOT_WRITE_FAILED",
    "SnapshotFile",
    "download_snapshot",
    "is_unchanged",
]

# Error code of a snapshot that downloaded but is not a usable SQLite database.
SNAPSHOT_INVALID: str = "InvalidSnapshot"
# Error code of a local failure (disk full, /tmp not writable) while storing it.
SNAPSHOT_WRITE_FAILED: str = "LocalWriteFailed"
# Error code of a download given up because the request that started it has no time left.
SNAPSHOT_DEADLINE: str = "DeadlineExceeded"

_CHUNK_SIZE: int = 1024 * 1024
_NOT_MODIFIED: int = 304


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
    if_none_match: str | None = None,
    deadline: float | None = None,
) -> SnapshotFile | None:
    """Download `location` to a new file `directory/<name_prefix><random>.db`; None if unchanged.

    With `if_none_match` (the ETag of the copy in use) S3 answers 304 Not Modified and
    nothing is downloaded when the object has not changed. Raises AwsError for S3
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
        raise AwsError(error.code, error.message) from None

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
        try:
            verify_sqlite_file(temp_path)
        except InvalidSqliteFileError as exc:
            raise AwsError(SNAPSHOT_INVALID, str(exc)) from None
        final_path = directory / f"{name_prefix}{uuid.uuid4().hex[:12]}.db"
        os.replace(temp_path, final_path)
    except BaseException as exc:
        remove_sqlite_file(temp_path)
        if isinstance(exc, AwsError):
            raise
        error = aws.describe_error(exc) if isinstance(exc, Exception) else None
        if error is not None:
            raise AwsError(error.code, error.message) from None
        if isinstance(exc, OSError):
            raise AwsError(SNAPSHOT_WRITE_FAILED, f"{exc.strerror or exc} ({directory})") from None
        raise
    finally:
        remove_sidecars(temp_path)
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
        raise AwsError(SNAPSHOT_DEADLINE, "the download did not finish in the time the request had")


def is_unchanged(snapshot: SnapshotFile) -> bool:
    """Whether the file still holds the bytes downloaded: same size, same SHA-256 (read whole)."""
    try:
        if snapshot.path.stat().st_size != snapshot.size_bytes:
            return False
        with snapshot.path.open("rb") as file:
            return hashlib.file_digest(file, "sha256").hexdigest() == snapshot.sha256
    except OSError:
        return False
