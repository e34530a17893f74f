"""GET /users on names SQLite stored as it was given: invalid UTF-8, CESU-8, BLOBs, NULL, numbers.

SQLite does not check the encoding of TEXT; sqlite3 raises on what is not UTF-8. Each such row
is served (bad bytes as U+FFFD) with one warning naming its id, and no row is lost on a page
boundary (docs/pagination.md, "Stored names that are not text").
"""

from __future__ import annotations

import contextlib
import json
import re
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.config import Settings
from tests.support.logs import log_lines

# (id, SQL literal of the stored value, what is served, storage class in the warning or None)
STORED: list[tuple[int, str, str, str | None]] = [
    (1, "'Ann'", "Ann", None),
    (2, "CAST(X'75736572FF' AS TEXT)", "user\ufffd", "text not UTF-8"),  # the example
    (3, "'Ben'", "Ben", None),
    # CESU-8 (Java's modified UTF-8) of U+1F600: surrogates, each byte invalid in UTF-8
    (4, "CAST(X'EDA0BDEDB880' AS TEXT)", "\ufffd" * 6, "text not UTF-8"),
    (5, "X'426C6F62'", "Blob", "blob"),  # a BLOB holding valid UTF-8
    (6, "X'FF00'", "\ufffd\x00", "blob not UTF-8"),
    (7, "NULL", "", "null"),
    (8, "42", "42", None),  # TEXT affinity stores it as the text "42"
    (9, "'Cy'", "Cy", None),
]


@pytest.fixture
def stored_db(tmp_path: Path) -> Path:
    path = tmp_path / "stored.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        for key, literal, _, _ in STORED:
            connection.execute(f"INSERT INTO users (id, name) VALUES ({key}, {literal})")  # noqa: S608 (fixed literals)
    return path


@pytest.fixture
def stored_client(
    stored_db: Path, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> FlaskClient:
    return make_app(sqlite_settings(stored_db)).test_client()


def _walk(client: FlaskClient, url: str) -> list[str]:
    names: list[str] = []
    while True:
        response = client.get(url)
        assert response.status_code == 200, response.data
        names += json.loads(response.data)["users"]
        link = response.headers.get("Link")
        if link is None:
            return names
        match = re.match(r"<([^>]+)>", link)
        assert match is not None
        url = match[1]


def test_users_serves_undecodable_and_non_text_names(
    stored_client: FlaskClient, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    response = stored_client.get("/users?format=json")

    assert response.status_code == 200
    assert json.loads(response.data)["users"] == [served for _, _, served, _ in STORED]
    warnings = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert [(w["message"], w["user_id"], w["stored_as"]) for w in warnings] == [
        ("stored name repaired", key, kind) for key, _, _, kind in STORED if kind is not None
    ]


def test_users_text_format_serves_the_replacement_character(stored_client: FlaskClient) -> None:
    response = stored_client.get("/users?limit=2")

    assert response.status_code == 200
    assert response.get_data(as_text=True) == "Ann,user\ufffd"


@pytest.mark.parametrize("limit", range(1, len(STORED) + 1))
def test_users_every_row_is_reachable_by_links_at_every_page_size(stored_client: FlaskClient, limit: int) -> None:
    # A page reads one row past its limit: the bad row after a page's last must not cost that row.
    assert _walk(stored_client, f"/users?format=json&limit={limit}") == [served for _, _, served, _ in STORED]


def test_users_valid_row_before_a_bad_one_is_served(stored_client: FlaskClient) -> None:
    response = stored_client.get("/users?format=json&limit=1")

    assert json.loads(response.data)["users"] == ["Ann"]
    assert "Link" in response.headers


def test_users_clean_table_logs_no_warning(
    make_app: Callable[[Settings], Flask],
    sqlite_settings: Callable[[Path], Settings],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path = tmp_path / "clean.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", [("Zoë",), ("李雷",)])
    client = make_app(sqlite_settings(path)).test_client()
    capsys.readouterr()

    assert client.get("/users").get_data(as_text=True) == "Zoë,李雷"
    assert [line for line in log_lines(capsys.readouterr().out) if line["level"] != "INFO"] == []
