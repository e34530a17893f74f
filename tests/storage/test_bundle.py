"""Copying the bundled database to /tmp: only when needed, atomically, never writing the bundle."""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import shutil
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask

from app import create_app
from app.adapter import make_handler
from app.config import DEFAULT_BUNDLED_DB_PATH, Settings
from app.storage.bundle import BundleInvalidError, BundleMissingError, CopyPathError, ensure_local_copy
from tests.support.engines import engine_of
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event
from tests.support.logs import log_lines
from tests.support.tables import build_users_db


@pytest.fixture
def bundle(tmp_path: Path) -> Path:
    """A copy of the real bundle in its own 'code directory'."""
    code_dir = tmp_path / "var-task" / "data"
    code_dir.mkdir(parents=True)
    path = code_dir / "users.db"
    shutil.copyfile(DEFAULT_BUNDLED_DB_PATH, path)
    return path


def _snapshot(directory: Path) -> dict[str, tuple[int, int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.stat().st_size, p.read_bytes()) for p in sorted(directory.iterdir())}


def test_bundle_copied_when_missing(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "tmp" / "users.db"

    assert ensure_local_copy(bundle, target) is True
    assert target.read_bytes() == bundle.read_bytes()


def test_bundle_not_copied_again_when_identical(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "users.db"
    ensure_local_copy(bundle, target)
    inode = target.stat().st_ino

    assert ensure_local_copy(bundle, target) is False
    assert target.stat().st_ino == inode


def test_bundle_replaces_stale_copy_of_same_size(bundle: Path, tmp_path: Path) -> None:
    target = tmp_path / "users.db"
    stale = bytearray(bundle.read_bytes())
    stale[-1] ^= 0xFF  # same size, different content: an older bundle
    target.write_bytes(bytes(stale))

    assert ensure_local_copy(bundle, target) is True
    assert target.read_bytes() == bundle.read_bytes()


def test_bundle_directory_never_written(bundle: Path, tmp_path: Path) -> None:
    before = _snapshot(bundle.parent)

    ensure_local_copy(bundle, tmp_path / "a" / "users.db")
    ensure_local_copy(bundle, tmp_path / "a" / "users.db")

    assert _snapshot(bundle.parent) == before


def test_bundle_copy_leaves_no_temp_files(bundle: Path, tmp_path: Path) -> None:
    target_dir = tmp_path / "tmp"

    ensure_local_copy(bundle, target_dir / "users.db")

    assert sorted(p.name for p in target_dir.iterdir()) == ["users.db"]


def test_bundle_failed_copy_cleans_up_and_keeps_old(
    bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    target = tmp_path / "users.db"
    target.write_bytes(b"old copy")

    def disk_full(*_: object, **__: object) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(shutil, "copyfile", disk_full)

    with pytest.raises(OSError, match="No space left"):
        ensure_local_copy(bundle, target)
    assert target.read_bytes() == b"old copy"
    assert sorted(p.name for p in tmp_path.iterdir() if p.is_file()) == ["users.db"]


def test_bundle_missing_fails_with_clear_error(tmp_path: Path) -> None:
    with pytest.raises(
        BundleMissingError, match=r"bundled database not found at .*nowhere\.db; build it with `make db`"
    ):
        ensure_local_copy(tmp_path / "nowhere.db", tmp_path / "users.db")


def test_create_app_fails_cold_start_when_bundle_missing(
    settings: Settings, make_app: Callable[[Settings], Flask], tmp_path: Path
) -> None:
    with pytest.raises(BundleMissingError):
        make_app(replace(settings, bundled_db_path=tmp_path / "missing.db"))


def _copy_in_process(args: tuple[str, str, multiprocessing.synchronize.Barrier]) -> bool:
    bundle, target, barrier = args
    barrier.wait()
    return ensure_local_copy(Path(bundle), Path(target))


def _copy_worker(
    bundle: str, target: str, barrier: multiprocessing.synchronize.Barrier, results: multiprocessing.Queue[object]
) -> None:
    try:
        results.put(_copy_in_process((bundle, target, barrier)))
    except Exception as exc:  # reported to the parent, which fails the test
        results.put(exc)


@pytest.mark.slow
def test_bundle_concurrent_cold_starts_share_tmp_safely(tmp_path: Path) -> None:
    # A bigger bundle widens the window in which the copies overlap.
    bundle = tmp_path / "big.db"
    bundle.write_bytes(os.urandom(8 * 1024 * 1024))
    target = tmp_path / "tmp" / "users.db"
    context = multiprocessing.get_context("spawn")
    workers = 6
    barrier = context.Barrier(workers)
    results: multiprocessing.Queue[object] = context.Queue()
    processes = [
        context.Process(target=_copy_worker, args=(str(bundle), str(target), barrier, results)) for _ in range(workers)
    ]
    for process in processes:
        process.start()
    outcomes = [results.get(timeout=60) for _ in processes]
    for process in processes:
        process.join(timeout=60)

    assert all(isinstance(outcome, bool) for outcome in outcomes), outcomes
    assert any(outcomes)
    assert target.read_bytes() == bundle.read_bytes()
    assert sorted(p.name for p in target.parent.iterdir()) == ["users.db"]


def _corrupt_middle(path: Path) -> None:
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 4096] = b"\xff" * 4096
    path.write_bytes(bytes(data))


def _without_users(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("ALTER TABLE users RENAME TO people")


@pytest.mark.parametrize(
    ("spoil", "problem"),
    [
        pytest.param(lambda path: path.write_bytes(b""), "not a SQLite database (bad or missing header)", id="empty"),
        pytest.param(
            lambda path: path.write_bytes(b"<html>not a database</html>" * 10),
            "not a SQLite database (bad or missing header)",
            id="not-sqlite",
        ),
        pytest.param(_without_users, "the database has no 'users' table", id="no-users-table"),
        pytest.param(_corrupt_middle, "", id="corrupted-middle"),
    ],
)
def test_bundle_invalid_fails_the_cold_start_with_one_line(
    spoil: Callable[[Path], None],
    problem: str,
    settings: Settings,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a bundle of 20,000 users (several pages, so the middle is data), spoiled
    bundle = tmp_path / "spoiled.db"
    build_users_db(bundle, 20_000)
    spoil(bundle)
    capsys.readouterr()

    # WHEN a container starts on it THEN the init fails, naming the file and the problem
    with pytest.raises(BundleInvalidError) as raised:
        create_app(replace(settings, bundled_db_path=bundle))

    errors = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert [line["message"] for line in errors] == ["bundled database invalid"]
    assert errors[0]["bundled_db_path"] == str(bundle)
    assert errors[0]["problem"] == str(raised.value)
    assert problem in str(raised.value)
    assert str(raised.value)


@pytest.mark.parametrize("recycled", [pytest.param(True, id="pool-recycled"), pytest.param(False, id="pool-warm")])
def test_bundle_copy_deleted_while_warm_is_restored(
    recycled: bool, app: Flask, settings: Settings, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN a warm container whose /tmp copy is then deleted (and its pooled connection recycled)
    handler = make_handler(app)
    assert handler(make_v1_event(), FakeContext())["statusCode"] == 200
    settings.sqlite_copy_path.unlink()
    if recycled:
        engine_of(app).dispose()

    # WHEN the next requests arrive THEN they are served; once a new connection was needed, from a new copy
    responses = [handler(make_v1_event(), FakeContext()) for _ in range(3)]

    assert [(r["statusCode"], r["body"]) for r in responses] == [(200, "Alice,Bob,Carol,Dave,Eve")] * 3
    assert settings.sqlite_copy_path.is_file() is recycled
    restored = [
        line for line in log_lines(capsys.readouterr().out) if line["message"] == "bundled database copy restored"
    ]
    assert len(restored) == (1 if recycled else 0)  # an open connection still reads the unlinked file


def test_bundle_copy_replaced_while_warm_is_restored(app: Flask, settings: Settings, tmp_path: Path) -> None:
    # GIVEN a warm container whose /tmp copy is replaced by another database without a users table
    handler = make_handler(app)
    assert handler(make_v1_event(), FakeContext())["statusCode"] == 200
    other = tmp_path / "other.db"
    with contextlib.closing(sqlite3.connect(other)) as connection, connection:
        connection.execute("CREATE TABLE things (id INTEGER PRIMARY KEY)")
    os.replace(other, settings.sqlite_copy_path)
    engine_of(app).dispose()

    # WHEN a request arrives THEN it is served from the restored copy
    response = handler(make_v1_event(), FakeContext())

    assert (response["statusCode"], response["body"]) == (200, "Alice,Bob,Carol,Dave,Eve")


@pytest.mark.parametrize("blocker", ["parent-is-a-file", "target-is-a-directory"])
def test_bundle_unwritable_copy_path_is_named(blocker: str, bundle: Path, tmp_path: Path) -> None:
    if blocker == "parent-is-a-file":
        (tmp_path / "blocked").write_text("a file")
        target = tmp_path / "blocked" / "users.db"
    else:
        target = tmp_path / "users.db"
        target.mkdir()

    with pytest.raises(CopyPathError) as raised:
        ensure_local_copy(bundle, target)

    # An OSError still (Database.repair catches those while warm), named by the setting, one line.
    assert isinstance(raised.value, OSError)
    message = str(raised.value)
    assert message.startswith(f"SQLITE_COPY_PATH {str(target)!r} cannot be written (")
    assert "\n" not in message
    assert ".tmp" not in message
    assert not list(tmp_path.rglob("*.tmp"))
