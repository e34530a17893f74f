"""The S3 snapshot lifecycle, driven through the Lambda handler: cold start, failures, refresh and swap."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from flask import Flask, current_app
from sqlalchemy import Engine, text

from app.adapter import LambdaHandler, make_handler
from app.config import S3Location, Settings
from app.storage import DATABASE_KEY
from app.storage.s3_snapshot import SnapshotFile
from app.storage.snapshot import RETRY_MAX_SECONDS, SnapshotSource
from tests.support.engines import engine_of, queue_pool
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event, make_v2_event, response_headers
from tests.support.logs import log_lines
from tests.support.moto_iam import acting_as_user_without_access
from tests.support.snapshots import SNAPSHOT_BUCKET, SNAPSHOT_OBJECT_KEY, FakeClock, MakeSnapshotApp

PutSnapshot = Callable[..., dict[str, Any]]

REFRESH_SECONDS = 60


@pytest.fixture
def snapshot_dir(snapshot_settings: Settings) -> Path:
    return snapshot_settings.sqlite_copy_path.parent


@pytest.fixture
def serve() -> Callable[[Flask], LambdaHandler]:
    return make_handler


def _get_users(handler: LambdaHandler) -> dict[str, Any]:
    return handler(make_v1_event(), FakeContext())


def _snapshot_files(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir()) if directory.is_dir() else []


def _engine(application: Flask) -> Engine | None:
    engine: Engine | None = application.extensions[DATABASE_KEY].engine
    return engine


def _snapshot(application: Flask) -> SnapshotFile | None:
    """The snapshot file the app serves from (None: none loaded)."""
    source = application.extensions[DATABASE_KEY]
    assert isinstance(source, SnapshotSource)
    current: SnapshotFile | None = source.current
    return current


# --- cold start ---------------------------------------------------------------------------


def test_snapshot_cold_start_serves_the_s3_object_not_the_bundle(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    snapshot_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    uploaded = put_snapshot(["Sam", "Zoë"])

    application = make_snapshot_app()

    handler = serve(application)
    response = _get_users(handler)

    assert (response["statusCode"], response["body"]) == (200, "Sam,Zoë")
    files = _snapshot_files(snapshot_dir)
    assert len(files) == 1
    assert files[0].startswith(f"users.snapshot-{os.getpid()}-")  # not the bundle's users.db
    assert engine_of(application).url.database == f"file:{snapshot_dir / files[0]}"
    assert engine_of(application).url.query == {"mode": "ro", "uri": "true"}
    lines = log_lines(capsys.readouterr().out)
    loaded = next(line for line in lines if line["message"] == "snapshot loaded")
    assert loaded["snapshot_etag"] == uploaded["ETag"]
    assert loaded["database"] == f"s3://{SNAPSHOT_BUCKET}/{SNAPSHOT_OBJECT_KEY}"
    assert loaded["replaced_etag"] is None
    initialised = next(line for line in lines if line["message"] == "app initialised")
    assert initialised["database_source"] == "DB_SNAPSHOT_S3_URI"
    assert initialised["snapshot_etag"] == uploaded["ETag"]


def test_snapshot_cold_start_records_version_of_versioned_object(
    s3_client: Any, put_snapshot: PutSnapshot, make_snapshot_app: MakeSnapshotApp
) -> None:
    s3_client.put_bucket_versioning(Bucket=SNAPSHOT_BUCKET, VersioningConfiguration={"Status": "Enabled"})
    uploaded = put_snapshot(["Sam"])

    snapshot = _snapshot(make_snapshot_app())

    assert snapshot is not None
    assert (snapshot.etag, snapshot.version_id) == (uploaded["ETag"], uploaded["VersionId"])


def _upload_case(name: str) -> Callable[[PutSnapshot], object]:
    cases: dict[str, Callable[[PutSnapshot], object]] = {
        "missing-key": lambda put: put(["Sam"], key="prod/other.db"),
        "not-sqlite": lambda put: put(body=b"<html>Not Found</html>"),
        "truncated-sqlite": lambda put: put(body=b"SQLite format 3\x00" + bytes(200)),
    }
    return cases[name]


@pytest.mark.parametrize(
    ("case", "error_code"),
    [
        pytest.param("missing-key", "NoSuchKey", id="missing-key"),
        pytest.param("not-sqlite", "InvalidSnapshot", id="not-sqlite"),
        pytest.param("truncated-sqlite", "InvalidSnapshot", id="truncated-sqlite"),
    ],
)
def test_snapshot_cold_start_failure_starts_and_answers_503_json(
    case: str,
    error_code: str,
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    snapshot_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _upload_case(case)(put_snapshot)

    application = make_snapshot_app()

    handler = serve(application)  # the cold start does not raise
    response = _get_users(handler)

    assert response["statusCode"] == 503
    assert response_headers(response)["content-type"] == "application/json"
    assert response_headers(response)["retry-after"] == "1"
    assert json.loads(response["body"]) == {
        "error": "database_unavailable",
        "message": "The database is unavailable. Retry shortly.",
    }
    assert _engine(application) is None
    assert _snapshot_files(snapshot_dir) == []
    lines = log_lines(capsys.readouterr().out)
    failure = next(line for line in lines if line["message"] == "snapshot download failed")
    assert failure["level"] == "ERROR"
    assert (failure["error_code"], failure["serving_etag"], failure["retry_in_seconds"]) == (error_code, None, 1.0)
    assert failure["s3_uri"] == f"s3://{SNAPSHOT_BUCKET}/{SNAPSHOT_OBJECT_KEY}"
    assert "exception" not in failure  # the code says it; no traceback noise
    invocation = next(line for line in lines if line["message"] == "invocation")
    assert invocation["status"] == 503
    assert "pool_size" not in invocation


def test_snapshot_cold_start_missing_bucket_answers_503(
    make_snapshot_app: MakeSnapshotApp, serve: Callable[[Flask], LambdaHandler], capsys: pytest.CaptureFixture[str]
) -> None:
    handler = serve(make_snapshot_app(db_snapshot_s3_uri=S3Location("no-such-bucket", SNAPSHOT_OBJECT_KEY)))

    assert _get_users(handler)["statusCode"] == 503
    failure = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "snapshot download failed")
    assert failure["error_code"] == "NoSuchBucket"


def test_snapshot_cold_start_access_denied_answers_503(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    put_snapshot(["Sam"])

    with acting_as_user_without_access(monkeypatch):
        handler = serve(make_snapshot_app())
        response = _get_users(handler)

    assert response["statusCode"] == 503
    failure = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "snapshot download failed")
    assert (failure["error_code"], failure["error_message"]) == ("AccessDenied", "Access Denied")


def test_snapshot_unavailable_answers_503_for_every_path(
    make_snapshot_app: MakeSnapshotApp, serve: Callable[[Flask], LambdaHandler]
) -> None:
    handler = serve(make_snapshot_app())

    response = handler(make_v2_event(path="/nope"), FakeContext())

    # Without a database the service is unavailable as a whole, as it would be mid-deploy.
    assert response["statusCode"] == 503


# --- retries after a failed cold start ------------------------------------------------------


def test_snapshot_failed_cold_start_retries_after_backoff_and_recovers(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    aws_calls: Counter[str],
) -> None:
    handler = serve(make_snapshot_app())
    assert aws_calls["GetObject"] == 1
    put_snapshot(["Sam"])

    early = _get_users(handler)  # within the 1 s backoff: no new S3 call
    assert aws_calls["GetObject"] == 1
    clock.advance(1)
    recovered = _get_users(handler)
    clock.advance(86_400)
    later = _get_users(handler)  # refresh is off: loaded once, never checked again

    assert early["statusCode"] == 503
    assert (recovered["statusCode"], recovered["body"]) == (200, "Sam")
    assert (later["statusCode"], later["body"]) == (200, "Sam")
    assert aws_calls["GetObject"] == 2


def test_snapshot_retry_backoff_doubles_up_to_a_minute(
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    aws_calls: Counter[str],
) -> None:
    handler = serve(make_snapshot_app())  # the object never appears
    retry_afters = [response_headers(_get_users(handler))["retry-after"]]

    for _ in range(8):
        clock.advance(int(retry_afters[-1]) - 0.5)
        calls_before = aws_calls["GetObject"]
        assert _get_users(handler)["statusCode"] == 503
        assert aws_calls["GetObject"] == calls_before  # still backing off
        clock.advance(0.5)
        retry_afters.append(response_headers(_get_users(handler))["retry-after"])
        assert aws_calls["GetObject"] == calls_before + 1

    assert retry_afters == ["1", "2", "4", "8", "16", "32", "60", "60", "60"]
    assert int(retry_afters[-1]) == RETRY_MAX_SECONDS


# --- refresh on warm invocations ------------------------------------------------------------


def test_snapshot_refresh_is_off_by_default(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    aws_calls: Counter[str],
) -> None:
    put_snapshot(["Sam"])
    handler = serve(make_snapshot_app())
    put_snapshot(["Sam", "Ann"])

    clock.advance(7 * 86_400)
    response = _get_users(handler)

    assert response["body"] == "Sam"
    assert aws_calls["GetObject"] == 1


def test_snapshot_refresh_swaps_in_newer_object_after_ttl(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    aws_calls: Counter[str],
    snapshot_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    first = put_snapshot(["Sam"])
    application = make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS)
    handler = serve(application)
    assert _get_users(handler)["body"] == "Sam"
    old_engine = engine_of(application)
    old_pool = old_engine.pool
    [old_file] = _snapshot_files(snapshot_dir)
    second = put_snapshot(["Sam", "Ann"])

    clock.advance(REFRESH_SECONDS - 1)
    before_ttl = _get_users(handler)
    clock.advance(1)
    capsys.readouterr()
    after_ttl = _get_users(handler)

    assert before_ttl["body"] == "Sam"
    assert after_ttl["body"] == "Sam,Ann"
    assert aws_calls["GetObject"] == 2
    assert _engine(application) is not old_engine
    assert old_engine.pool is not old_pool  # disposed: its connections closed, a fresh empty pool
    [new_file] = _snapshot_files(snapshot_dir)
    assert new_file != old_file  # a new name; the old file is gone
    lines = log_lines(capsys.readouterr().out)
    loaded = next(line for line in lines if line["message"] == "snapshot loaded")
    assert (loaded["snapshot_etag"], loaded["replaced_etag"]) == (second["ETag"], first["ETag"])
    invocation = next(line for line in lines if line["message"] == "invocation")
    assert (invocation["pool_size"], invocation["pool_checked_out"]) == (5, 0)  # the new engine's pool


def test_snapshot_refresh_of_unchanged_object_keeps_engine_and_file(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    aws_calls: Counter[str],
    snapshot_dir: Path,
) -> None:
    put_snapshot(["Sam"])
    application = make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS)
    handler = serve(application)
    engine, files = _engine(application), _snapshot_files(snapshot_dir)

    for _ in range(3):
        clock.advance(REFRESH_SECONDS)
        assert _get_users(handler)["body"] == "Sam"

    assert aws_calls["GetObject"] == 4  # one conditional GET per period, each answered 304
    assert _engine(application) is engine
    assert _snapshot_files(snapshot_dir) == files


@pytest.mark.parametrize(
    ("break_object", "error_code"),
    [
        pytest.param(
            lambda s3, put: s3.delete_object(Bucket=SNAPSHOT_BUCKET, Key=SNAPSHOT_OBJECT_KEY), "NoSuchKey", id="deleted"
        ),
        pytest.param(lambda s3, put: put(body=b"\x00" * 4096), "InvalidSnapshot", id="corrupt"),
        pytest.param(
            lambda s3, put: (
                s3.delete_object(Bucket=SNAPSHOT_BUCKET, Key=SNAPSHOT_OBJECT_KEY),
                s3.delete_bucket(Bucket=SNAPSHOT_BUCKET),
            ),
            "NoSuchBucket",
            id="bucket-gone",
        ),
    ],
)
def test_snapshot_refresh_failure_keeps_serving_previous_copy(
    break_object: Callable[[Any, PutSnapshot], object],
    error_code: str,
    s3_client: Any,
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    aws_calls: Counter[str],
    snapshot_dir: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    good = put_snapshot(["Sam"])
    handler = serve(make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS))
    files = _snapshot_files(snapshot_dir)
    break_object(s3_client, put_snapshot)

    clock.advance(REFRESH_SECONDS)
    capsys.readouterr()
    response = _get_users(handler)
    clock.advance(REFRESH_SECONDS - 1)
    _get_users(handler)  # the next check waits a full period

    assert (response["statusCode"], response["body"]) == (200, "Sam")
    assert aws_calls["GetObject"] == 2
    assert _snapshot_files(snapshot_dir) == files
    failure = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "snapshot download failed")
    assert (failure["error_code"], failure["serving_etag"], failure["retry_in_seconds"]) == (
        error_code,
        good["ETag"],
        REFRESH_SECONDS,
    )


# --- swapping safely ----------------------------------------------------------------------


@pytest.fixture
def slow_route(
    put_snapshot: PutSnapshot, make_snapshot_app: MakeSnapshotApp
) -> Iterator[tuple[Flask, threading.Event, threading.Event]]:
    """A snapshot app (of "Sam") with GET /slow, which reads on a connection held until `release` is set."""
    put_snapshot(["Sam"])
    application = make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS)
    entered, release = threading.Event(), threading.Event()

    def slow() -> str:
        with engine_of(current_app).connect() as connection:
            entered.set()
            release.wait(timeout=30)
            return ",".join(connection.execute(text("SELECT name FROM users ORDER BY id")).scalars())

    application.add_url_rule("/slow", "slow", slow)
    yield application, entered, release
    release.set()


def _wait_until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        time.sleep(0.005)


def test_snapshot_swap_lets_in_flight_request_finish_on_the_old_copy(
    put_snapshot: PutSnapshot,
    slow_route: tuple[Flask, threading.Event, threading.Event],
    clock: FakeClock,
    snapshot_dir: Path,
) -> None:
    # The threaded local server serves requests concurrently; Lambda never does. No lock: a
    # checked-out connection survives dispose() and keeps reading its file after the unlink.
    application, entered, release = slow_route
    old_engine = engine_of(application)
    old_pool = queue_pool(old_engine)
    [old_file] = _snapshot_files(snapshot_dir)

    with ThreadPoolExecutor(max_workers=2) as pool:
        in_flight = pool.submit(application.test_client().get, "/slow")
        assert entered.wait(timeout=30)
        put_snapshot(["Sam", "Ann"])
        clock.advance(REFRESH_SECONDS)

        # A request arriving meanwhile swaps in the new copy and is served from it at once.
        refreshed = application.test_client().get("/users")
        assert refreshed.text == "Sam,Ann"
        assert engine_of(application) is not old_engine
        assert old_engine.pool is not old_pool  # disposed while /slow still holds a connection of it
        assert old_file not in _snapshot_files(snapshot_dir)  # deleted under it
        assert not in_flight.done()

        release.set()
        finished = in_flight.result(timeout=30)

    assert (finished.status_code, finished.text) == (200, "Sam")
    # The next request closes the connection /slow gave back to the replaced pool.
    assert application.test_client().get("/users").text == "Sam,Ann"
    assert old_pool.checkedin() == 0
    assert len(_snapshot_files(snapshot_dir)) == 1


def test_snapshot_leftovers_of_dead_processes_are_removed_at_cold_start(
    put_snapshot: PutSnapshot, make_snapshot_app: MakeSnapshotApp, snapshot_dir: Path
) -> None:
    put_snapshot(["Sam"])
    dead_pid = _dead_pid()
    live_pid = os.getppid()
    snapshot_dir.mkdir(parents=True, exist_ok=True)
    leftovers = {
        f"users.snapshot-{dead_pid}-0123456789ab.db": False,
        f"users.snapshot-{dead_pid}-0123456789ab.db-shm": False,
        f".users.snapshot-{dead_pid}-k2j3h4.tmp": False,
        f"users.snapshot-{os.getpid()}-ba9876543210.db": False,  # ours, from before a restart
        f"users.snapshot-{live_pid}-0123456789ab.db": True,  # another live server's
        "users.db": True,  # not a snapshot file
    }
    for name in leftovers:
        (snapshot_dir / name).write_bytes(b"x")

    snapshot = _snapshot(make_snapshot_app())

    assert snapshot is not None
    kept = sorted(name for name, keep in leftovers.items() if keep)
    assert _snapshot_files(snapshot_dir) == sorted([*kept, snapshot.path.name])


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.slow
def test_snapshot_refresh_stops_at_the_requests_deadline_and_serves_the_copy_it_has(
    put_snapshot: PutSnapshot,
    make_snapshot_app: MakeSnapshotApp,
    serve: Callable[[Flask], LambdaHandler],
    clock: FakeClock,
    snapshot_dir: Path,
    capsys: pytest.CaptureFixture[str],
    slow_body: float,
) -> None:
    # GIVEN a warm container on a snapshot, and a newer object that downloads slowly (~5 s)
    put_snapshot(["Sam"])
    application = make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS)
    handler = serve(application)
    [old_file] = _snapshot_files(snapshot_dir)
    put_snapshot(["x" * 1000 for _ in range(100)])
    clock.advance(REFRESH_SECONDS)
    capsys.readouterr()

    # WHEN a request with 3 s left triggers the refresh
    started = time.monotonic()
    response = handler(make_v1_event(), FakeContext(remaining_ms=3_000))
    elapsed = time.monotonic() - started

    # THEN the download gives up at half the budget and the request is served from the copy it had
    assert (response["statusCode"], response["body"]) == (200, "Sam")
    assert elapsed < 3.0
    assert _snapshot_files(snapshot_dir) == [old_file]
    failed = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "snapshot download failed")
    assert failed["error_code"] == "DeadlineExceeded"
    assert failed["retry_in_seconds"] == REFRESH_SECONDS
