"""The cold start checks what GET /users needs of a SQLite file: bundle, S3 snapshot, DATABASE_URL."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask

from app.config import Settings
from app.storage.bundle import BundleInvalidError
from app.storage.sqlite_file import InvalidSqliteFileError, verify_sqlite_file
from app.storage.urls import sqlite_read_only_url
from tests.support.logs import log_lines

# Schemas the query serves, each with the rows ("Ann", "Ben") under ids 1 and 2.
SERVABLE: dict[str, list[str]] = {
    "rowid": ["CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)"],
    "without-rowid": ["CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT) WITHOUT ROWID"],
    "varchar-bigint": ["CREATE TABLE Users (ID BIGINT PRIMARY KEY, Name VARCHAR(80))"],
    "untyped": ["CREATE TABLE users (id PRIMARY KEY, name)"],
    "view": [
        "CREATE TABLE people (pid INTEGER PRIMARY KEY, full_name TEXT)",
        "CREATE VIEW users AS SELECT pid AS id, full_name AS name FROM people",
    ],
}
# Schemas it cannot serve, and what the one line says.
UNSERVABLE: dict[str, tuple[list[str], str]] = {
    "no-table": (["CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)"], "the database has no 'users' table"),
    "no-name": (["CREATE TABLE users (id INTEGER PRIMARY KEY, email TEXT)"], "the 'users' table has no 'name' column"),
    "no-id": (["CREATE TABLE users (key INTEGER PRIMARY KEY, name TEXT)"], "the 'users' table has no 'id' column"),
    "text-id": (["CREATE TABLE users (id TEXT PRIMARY KEY, name TEXT)"], "'id' column is TEXT, not integer"),
    "real-name": (["CREATE TABLE users (id INTEGER PRIMARY KEY, name REAL)"], "'name' column is REAL, not text"),
    "view-no-name": (
        ["CREATE TABLE people (id INTEGER PRIMARY KEY, n TEXT)", "CREATE VIEW users AS SELECT id, n FROM people"],
        "the 'users' view has no 'name' column",
    ),
    "broken-view": (
        [
            "CREATE TABLE people (id INTEGER PRIMARY KEY, name TEXT)",
            "CREATE VIEW users AS SELECT id, name FROM people",
            "DROP TABLE people",
        ],
        "unreadable SQLite database",
    ),
}


def _build(path: Path, statements: list[str]) -> Path:
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        for statement in statements:
            connection.execute(statement)
        table = "people" if any("VIEW" in s for s in statements) else "users"
        if not any(s.startswith("DROP") for s in statements):
            for key, name in ((1, "Ann"), (2, "Ben")):
                with contextlib.suppress(sqlite3.OperationalError):  # schemas without those columns
                    connection.execute(f"INSERT INTO {table} VALUES (?, ?)", (key, name))  # noqa: S608
    return path


@pytest.mark.parametrize("schema", SERVABLE)
def test_servable_schemas_pass_and_are_served(
    schema: str, tmp_path: Path, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    path = _build(tmp_path / "users.db", SERVABLE[schema])
    verify_sqlite_file(path)

    client = make_app(sqlite_settings(path)).test_client()

    assert client.get("/users?limit=1").get_data(as_text=True) == "Ann"
    assert client.get("/users").get_data(as_text=True) == "Ann,Ben"


@pytest.mark.parametrize("schema", UNSERVABLE)
def test_unservable_schemas_fail_with_what_is_missing(schema: str, tmp_path: Path) -> None:
    statements, problem = UNSERVABLE[schema]
    path = _build(tmp_path / "users.db", statements)

    with pytest.raises(InvalidSqliteFileError) as raised:
        verify_sqlite_file(path)

    assert problem in str(raised.value)
    assert "\n" not in str(raised.value)


@pytest.mark.parametrize("schema", ["no-name", "without-rowid-no-name"])
def test_bundle_with_unservable_schema_fails_the_cold_start_naming_the_file(
    schema: str, tmp_path: Path, settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    statements = {
        "no-name": UNSERVABLE["no-name"][0],
        "without-rowid-no-name": ["CREATE TABLE users (id INTEGER PRIMARY KEY, nom TEXT) WITHOUT ROWID"],
    }[schema]
    bundle = _build(tmp_path / "bundle.db", statements)

    with pytest.raises(BundleInvalidError) as raised:
        make_app(replace(settings, bundled_db_path=bundle))

    assert str(raised.value) == f"bundled database {bundle}: the 'users' table has no 'name' column"


def test_database_url_with_unservable_schema_fails_the_cold_start(
    tmp_path: Path,
    sqlite_settings: Callable[[Path], Settings],
    make_app: Callable[[Settings], Flask],
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = _build(tmp_path / "users.db", UNSERVABLE["no-name"][0])

    with pytest.raises(InvalidSqliteFileError) as raised:
        make_app(sqlite_settings(path))

    line = f"DATABASE_URL: SQLite database {path}: the 'users' table has no 'name' column"
    assert str(raised.value) == line
    errors = [entry for entry in log_lines(capsys.readouterr().out) if entry["level"] == "ERROR"]
    assert [(e["message"], e["problem"]) for e in errors] == [("database invalid", line)]


@pytest.mark.parametrize("form", ["absolute", "relative", "uri-ro", "uri-rwc"])
def test_database_url_to_a_missing_file_fails_and_creates_nothing(
    form: str,
    tmp_path: Path,
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    missing = tmp_path / "missing.db"
    url = {
        "absolute": f"sqlite:///{missing}",
        "relative": "sqlite:///missing.db",
        "uri-ro": sqlite_read_only_url(missing).render_as_string(),
        "uri-rwc": f"sqlite:///file:{missing}?mode=rwc&uri=true",
    }[form]

    with pytest.raises(InvalidSqliteFileError) as raised:
        make_app(replace(settings, database_url=url))

    assert str(raised.value) == f"DATABASE_URL: SQLite database {missing}: no such file"
    assert list(tmp_path.iterdir()) == []


def test_database_url_in_memory_fails_the_cold_start(settings: Settings, make_app: Callable[[Settings], Flask]) -> None:
    with pytest.raises(
        InvalidSqliteFileError, match="^DATABASE_URL: SQLite database :memory:: an in-memory .*no 'users' table"
    ):
        make_app(replace(settings, database_url="sqlite://"))


def test_database_url_file_removed_while_warm_is_not_created_again(
    tmp_path: Path, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    path = _build(tmp_path / "users.db", SERVABLE["rowid"])
    client = make_app(replace(sqlite_settings(path), db_pool="null")).test_client()
    assert client.get("/users").status_code == 200
    path.unlink()

    response = client.get("/users")

    assert response.status_code == 503
    assert json.loads(response.data)["error"] == "database_unavailable"
    assert not path.exists()


def test_s3_snapshot_with_unservable_schema_is_invalid(put_snapshot: Callable[..., object], tmp_path: Path) -> None:
    from app.storage import aws
    from app.storage.aws import AwsError
    from app.storage.s3_snapshot import SNAPSHOT_INVALID, download_snapshot
    from tests.support.snapshots import SNAPSHOT_LOCATION as LOCATION

    without_rowid = ["CREATE TABLE users (id INTEGER PRIMARY KEY, label TEXT) WITHOUT ROWID"]
    put_snapshot(body=_build(tmp_path / "upload.db", without_rowid).read_bytes())
    directory = tmp_path / "tmp"

    with pytest.raises(AwsError) as raised:
        download_snapshot(aws.client("s3"), LOCATION, directory, "users.snapshot-1-")

    assert raised.value.code == SNAPSHOT_INVALID
    assert raised.value.message == "the 'users' table has no 'name' column"
    assert list(directory.iterdir()) == []
