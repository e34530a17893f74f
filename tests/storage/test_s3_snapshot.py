"""Downloading one snapshot from S3 (moto): verified, to a new file, or an error with S3's code and no file."""

from __future__ import annotations

import contextlib
import hashlib
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from app.config import S3Location
from app.storage import aws
from app.storage.aws import AwsError
from app.storage.s3_snapshot import (
    SNAPSHOT_DEADLINE,
    SNAPSHOT_INVALID,
    SnapshotFile,
    download_snapshot,
    is_unchanged,
)
from app.storage.sqlite_file import verify_sqlite_file
from tests.support.moto_iam import acting_as_user_without_access
from tests.support.snapshots import SNAPSHOT_BUCKET, SNAPSHOT_OBJECT_KEY
from tests.support.snapshots import SNAPSHOT_LOCATION as LOCATION
from tests.support.tables import MakeUsersDb

PutSnapshot = Callable[..., dict[str, Any]]


def _download(
    directory: Path, *, location: S3Location = LOCATION, if_none_match: str | None = None
) -> SnapshotFile | None:
    return download_snapshot(aws.client("s3"), location, directory, "users.snapshot-1-", if_none_match=if_none_match)


def _names(path: Path) -> list[str]:
    with contextlib.closing(sqlite3.connect(f"file:{path}?mode=ro", uri=True)) as connection, connection:
        names = [row[0] for row in connection.execute("SELECT name FROM users ORDER BY id")]
    connection.close()
    return names


def test_download_snapshot_writes_verified_copy_with_etag(put_snapshot: PutSnapshot, tmp_path: Path) -> None:
    uploaded = put_snapshot(["Ann", "Bo"])

    snapshot = _download(tmp_path / "tmp")

    assert snapshot is not None
    assert snapshot.etag == uploaded["ETag"]
    assert snapshot.version_id is None  # bucket not versioned
    assert snapshot.path.parent == tmp_path / "tmp"
    assert snapshot.path.name.startswith("users.snapshot-1-")
    assert snapshot.path.suffix == ".db"
    assert snapshot.size_bytes == snapshot.path.stat().st_size
    assert _names(snapshot.path) == ["Ann", "Bo"]
    assert [p.name for p in (tmp_path / "tmp").iterdir()] == [snapshot.path.name]


def test_download_snapshot_records_version_id_of_versioned_bucket(
    s3_client: Any, put_snapshot: PutSnapshot, tmp_path: Path
) -> None:
    s3_client.put_bucket_versioning(Bucket=SNAPSHOT_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    put_snapshot(["old"])
    uploaded = put_snapshot(["new"])

    snapshot = _download(tmp_path / "tmp")

    assert snapshot is not None
    assert snapshot.version_id == uploaded["VersionId"]
    assert _names(snapshot.path) == ["new"]


def test_download_snapshot_each_download_gets_a_new_file(put_snapshot: PutSnapshot, tmp_path: Path) -> None:
    put_snapshot(["Ann"])

    first = _download(tmp_path / "tmp")
    second = _download(tmp_path / "tmp")

    assert first is not None and second is not None
    assert first.path != second.path
    assert first.path.exists() and second.path.exists()


def test_download_snapshot_unchanged_object_is_not_downloaded(put_snapshot: PutSnapshot, tmp_path: Path) -> None:
    uploaded = put_snapshot(["Ann"])

    assert _download(tmp_path / "tmp", if_none_match=uploaded["ETag"]) is None
    assert not (tmp_path / "tmp").exists()


def test_download_snapshot_changed_object_is_downloaded(put_snapshot: PutSnapshot, tmp_path: Path) -> None:
    old = put_snapshot(["Ann"])
    put_snapshot(["Ann", "Bo"])

    snapshot = _download(tmp_path / "tmp", if_none_match=old["ETag"])

    assert snapshot is not None
    assert _names(snapshot.path) == ["Ann", "Bo"]


def _truncated_database(make_users_db: MakeUsersDb) -> bytes:
    data = make_users_db([f"user {i} " * 20 for i in range(500)], filename="big.db").read_bytes()
    return data[: len(data) // 2]


def _database_without_users(make_users_db: MakeUsersDb) -> bytes:
    path = make_users_db(["x"], filename="people.db")
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("ALTER TABLE users RENAME TO people")
    connection.close()
    return path.read_bytes()


@pytest.mark.parametrize(
    ("make_body", "message"),
    [
        pytest.param(lambda _: b"", "not a SQLite database (bad or missing header)", id="empty"),
        pytest.param(lambda _: b"id,name\n1,Ann\n" * 20, "not a SQLite database (bad or missing header)", id="csv"),
        pytest.param(
            lambda _: b"SQLite format 3\x00" + b"\xff" * 5000, "unreadable SQLite database: ", id="header-then-garbage"
        ),
        pytest.param(
            _truncated_database, "unreadable SQLite database: database disk image is malformed", id="truncated"
        ),
        pytest.param(_database_without_users, "the database has no 'users' table", id="no-users-table"),
    ],
)
def test_download_snapshot_rejects_unusable_object_and_leaves_no_file(
    make_body: Callable[[MakeUsersDb], bytes],
    message: str,
    put_snapshot: PutSnapshot,
    make_users_db: MakeUsersDb,
    tmp_path: Path,
) -> None:
    put_snapshot(body=make_body(make_users_db))
    directory = tmp_path / "tmp"

    with pytest.raises(AwsError) as raised:
        _download(directory)

    assert raised.value.code == SNAPSHOT_INVALID
    assert raised.value.message.startswith(message)
    assert list(directory.iterdir()) == []


@pytest.mark.parametrize(
    ("location", "code"),
    [
        pytest.param(S3Location("no-such-bucket", SNAPSHOT_OBJECT_KEY), "NoSuchBucket", id="missing-bucket"),
        pytest.param(S3Location(SNAPSHOT_BUCKET, "prod/missing.db"), "NoSuchKey", id="missing-key"),
    ],
)
def test_download_snapshot_missing_object_raises_s3_code(
    location: S3Location, code: str, put_snapshot: PutSnapshot, tmp_path: Path
) -> None:
    put_snapshot(["Ann"])

    with pytest.raises(AwsError) as raised:
        _download(tmp_path / "tmp", location=location)

    assert raised.value.code == code
    assert not (tmp_path / "tmp").exists()


def test_download_snapshot_access_denied_raises_s3_code(
    put_snapshot: PutSnapshot, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    put_snapshot(["Ann"])

    with acting_as_user_without_access(monkeypatch), pytest.raises(AwsError) as raised:
        _download(tmp_path / "tmp")

    assert (raised.value.code, raised.value.message) == ("AccessDenied", "Access Denied")
    assert not (tmp_path / "tmp").exists()


class _BodyFailingAfter:
    """A GetObject body that yields `chunks` chunks and then fails as a dropped connection does."""

    def __init__(self, real_body: Any, chunks: int) -> None:
        self._real_body = real_body
        self._chunks = chunks

    def close(self) -> None:
        self._real_body.close()

    def iter_chunks(self, chunk_size: int) -> Any:
        from botocore.exceptions import ResponseStreamingError

        for index, chunk in enumerate(self._real_body.iter_chunks(chunk_size)):
            if index == self._chunks:
                raise ResponseStreamingError(error="Connection broken: IncompleteRead")
            yield chunk
        raise ResponseStreamingError(error="Connection broken: IncompleteRead")


def test_download_snapshot_interrupted_body_leaves_no_file(
    put_snapshot: PutSnapshot, make_users_db: MakeUsersDb, tmp_path: Path
) -> None:
    put_snapshot([f"user {i} " * 50 for i in range(2_000)])  # several 64 KiB chunks
    client = aws.client("s3")
    real_get_object = client.get_object

    def get_object(**request: Any) -> Any:
        response = real_get_object(**request)
        response["Body"] = _BodyFailingAfter(response["Body"], chunks=1)
        return response

    client.get_object = get_object

    with pytest.raises(AwsError) as raised:
        download_snapshot(client, LOCATION, tmp_path / "tmp", "users.snapshot-1-")

    assert raised.value.code == "ResponseStreamingError"
    assert list((tmp_path / "tmp").iterdir()) == []


def test_download_snapshot_local_write_failure_is_a_snapshot_error(
    put_snapshot: PutSnapshot, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    put_snapshot(["Ann"])
    directory = tmp_path / "tmp"

    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr("app.storage.s3_snapshot.verify_sqlite_file", disk_full)

    with pytest.raises(AwsError) as raised:
        _download(directory)

    assert raised.value.code == "LocalWriteFailed"
    assert raised.value.message == f"No space left on device ({directory})"
    assert list(directory.iterdir()) == []


def test_verify_sqlite_file_accepts_users_database(make_users_db: MakeUsersDb) -> None:
    verify_sqlite_file(make_users_db(["Ann"]))


def test_download_snapshot_wal_mode_database_leaves_no_sidecars(
    put_snapshot: PutSnapshot, make_users_db: MakeUsersDb, tmp_path: Path
) -> None:
    path = make_users_db(["Ann"], filename="wal.db")
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("PRAGMA journal_mode=WAL")
    connection.close()
    put_snapshot(body=path.read_bytes())
    directory = tmp_path / "tmp"

    snapshot = _download(directory)

    assert snapshot is not None
    assert snapshot.path.read_bytes()[18:20] == b"\x02\x02"  # still WAL mode, as uploaded
    assert [p.name for p in directory.iterdir()] == [snapshot.path.name]
    assert _names(snapshot.path) == ["Ann"]


def test_download_snapshot_records_the_sha256_of_the_bytes(put_snapshot: PutSnapshot, tmp_path: Path) -> None:
    put_snapshot(["Ann"])

    snapshot = _download(tmp_path / "tmp")

    assert snapshot is not None
    assert snapshot.sha256 == hashlib.sha256(snapshot.path.read_bytes()).hexdigest()
    assert is_unchanged(snapshot)
    snapshot.path.write_bytes(snapshot.path.read_bytes()[:-1] + b"\x01")  # same size, one byte off
    assert not is_unchanged(snapshot)


def test_download_snapshot_stops_at_the_deadline_and_leaves_no_file(
    put_snapshot: PutSnapshot, slow_body: float, tmp_path: Path
) -> None:
    # GIVEN an object of ~100 chunks that arrive slowly (~5 s in all)
    put_snapshot(["x" * 1000 for _ in range(100)])
    started = time.monotonic()

    # WHEN downloaded with half a second to go THEN it stops then, and keeps nothing
    with pytest.raises(AwsError) as raised:
        download_snapshot(
            aws.client("s3"),
            LOCATION,
            tmp_path / "tmp",
            "users.snapshot-1-",
            deadline=started + 0.5,
        )

    assert raised.value.code == SNAPSHOT_DEADLINE
    assert time.monotonic() - started < 0.5 + 2 * slow_body + 1.0  # the deadline, one chunk, slack for a busy machine
    assert list((tmp_path / "tmp").iterdir()) == []
