"""SnapStart with an S3 snapshot: the hooks as Lambda calls them, the copy checked after a restore.

The runtime-client path (awslambdaric holding /restore/next) is in tests/deploy/test_runtime_client.py;
here the hooks are called directly so that the copy can be changed between them, inside moto.
"""

from __future__ import annotations

import shutil
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.adapter import make_handler
from app.storage import DATABASE_KEY, Database
from app.storage.s3_snapshot import SnapshotFile
from app.storage.snapshot import SnapshotSource
from tests.support.engines import engine_of, queue_pool
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event
from tests.support.logs import log_lines
from tests.support.snapshots import SNAPSHOT_BUCKET, SNAPSHOT_OBJECT_KEY, FakeClock, MakeSnapshotApp
from tests.support.tables import MakeUsersDb

PutSnapshot = Callable[..., dict[str, Any]]
REFRESH_SECONDS = 60


def _database(application: Flask) -> Database:
    database: Database = application.extensions[DATABASE_KEY]
    return database


def _current(application: Flask) -> SnapshotFile:
    source = _database(application)
    assert isinstance(source, SnapshotSource) and source.current is not None
    return source.current


def _replace_with_other_database(path: Path, make_users_db: MakeUsersDb) -> None:
    # A valid database with the same table: only the bytes tell it apart from the download.
    shutil.copyfile(make_users_db(["Mallory"], filename="other.db"), path)


@pytest.mark.parametrize(
    "change",
    [
        pytest.param(None, id="unchanged"),
        pytest.param("deleted", id="deleted"),
        pytest.param("replaced", id="replaced-by-another-database"),
    ],
)
def test_snapstart_restore_trusts_the_s3_copy_only_if_it_is_the_file_downloaded(
    change: str | None,
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    make_users_db: MakeUsersDb,
    aws_calls: Counter[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN an init on an S3 snapshot, primed, and its before-snapshot hook run
    put_snapshot(["Sam", "Zoë"])
    application = make_snapshot_app()
    handler = make_handler(application)
    assert handler(make_v1_event(), FakeContext())["body"] == "Sam,Zoë"
    database = _database(application)
    database.before_snapshot()
    downloaded = _current(application)
    gets_before = aws_calls["GetObject"]

    # WHEN the copy is changed (or not) and the environment restored
    if change == "deleted":
        downloaded.path.unlink()
    elif change == "replaced":
        _replace_with_other_database(downloaded.path, make_users_db)
    database.after_restore()
    response = handler(make_v1_event(), FakeContext())

    # THEN the object's names are served: from the same copy after S3's "not modified", or from a
    # new download when the copy is not the file that was downloaded
    assert (response["statusCode"], response["body"]) == (200, "Sam,Zoë")
    assert aws_calls["GetObject"] == gets_before + 1  # the conditional GET, or the new download
    warnings = [line["message"] for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    if change is None:
        assert _current(application) is downloaded
        assert warnings == []
    else:
        assert _current(application).path != downloaded.path
        assert not downloaded.path.exists()
        assert warnings == ["snapshot copy changed since the snapshot: downloading it again"]


def test_snapstart_restore_with_a_changed_copy_and_s3_down_answers_503_not_the_changed_file(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    make_users_db: MakeUsersDb,
    s3_client: Any,
) -> None:
    put_snapshot(["Sam"])
    application = make_snapshot_app()
    handler = make_handler(application)
    database = _database(application)
    database.before_snapshot()
    _replace_with_other_database(_current(application).path, make_users_db)
    s3_client.delete_object(Bucket=SNAPSHOT_BUCKET, Key=SNAPSHOT_OBJECT_KEY)

    database.after_restore()
    response = handler(make_v1_event(), FakeContext())

    assert response["statusCode"] == 503
    assert "Mallory" not in response["body"]


def test_snapstart_before_snapshot_closes_the_pool_a_swap_replaced(
    put_snapshot: PutSnapshot, make_snapshot_app: MakeSnapshotApp, clock: FakeClock
) -> None:
    # GIVEN a connection given back to the pool a snapshot swap replaced (a request was using it),
    # which only the next request would close
    put_snapshot(["Sam"])
    application = make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS)
    handler = make_handler(application)
    old_pool = queue_pool(engine_of(application))
    in_flight = engine_of(application).connect()
    put_snapshot(["Sam", "Ann"])
    clock.advance(REFRESH_SECONDS)
    assert handler(make_v1_event(), FakeContext())["body"] == "Sam,Ann"
    in_flight.close()
    assert old_pool.checkedin() == 1

    # WHEN the snapshot is taken before any other request
    _database(application).before_snapshot()

    # THEN that connection is closed too: no pool holds one
    assert old_pool.checkedin() == 0
    assert queue_pool(engine_of(application)).checkedin() == 0
