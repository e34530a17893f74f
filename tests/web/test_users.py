"""GET /users through the Flask test client, and the JSON errors around it."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from werkzeug.test import TestResponse

from app.config import Settings
from app.storage.sqlite_file import InvalidSqliteFileError
from app.storage.urls import sqlite_read_only_url
from tests.support.engines import count_connects, engine_of, queue_pool
from tests.support.logs import log_lines
from tests.support.tables import MakeUsersDb


def test_users_returns_seed_names_as_plain_text(client: FlaskClient) -> None:
    response = client.get("/users")

    assert response.status_code == 200
    assert response.content_type == "text/plain; charset=utf-8"
    assert response.get_data(as_text=True) == "Alice,Bob,Carol,Dave,Eve"


def test_users_keeps_insertion_order_and_utf8(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    names = ["Zoë", "Ålvaro", "李雷", "Bob", "Émile 🚀"]
    client = make_app(sqlite_settings(make_users_db(names))).test_client()

    response = client.get("/users")

    assert response.data == ",".join(names).encode("utf-8")


def test_users_empty_table_is_empty_body(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    client = make_app(sqlite_settings(make_users_db([]))).test_client()

    response = client.get("/users")

    assert (response.status_code, response.data) == (200, b"")


def test_users_trailing_slash_is_404(client: FlaskClient) -> None:
    assert client.get("/users/").status_code == 404


def _assert_503(response: TestResponse) -> dict[str, str]:
    assert response.status_code == 503
    assert response.content_type == "application/json"
    assert response.headers["Retry-After"] == "1"
    body: dict[str, str] = json.loads(response.data)
    assert body == {"error": "database_unavailable", "message": "The database is unavailable. Retry shortly."}
    return body


def test_users_database_file_deleted_after_start_is_503_without_details(
    make_users_db: MakeUsersDb,
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a DATABASE_URL file that passed the cold start, then was deleted before any connection
    (tmp_path / "secret-dir").mkdir()
    path = make_users_db(["Ann"], filename="secret-dir/users.db")
    url = sqlite_read_only_url(path).render_as_string()
    client = make_app(replace(settings, database_url=url)).test_client()
    path.unlink()

    response = client.get("/users")

    _assert_503(response)
    assert b"secret-dir" not in response.data
    assert not path.exists()  # opened without creating it
    logged = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert logged[0]["message"] == "database unavailable"
    assert "unable to open database file" in logged[0]["exception"]


def test_users_corrupt_database_file_fails_the_cold_start(
    settings: Settings, make_app: Callable[[Settings], Flask], tmp_path: Path
) -> None:
    garbage = tmp_path / "garbage.db"
    garbage.write_bytes(b"this is not a SQLite database, just bytes" * 100)

    with pytest.raises(InvalidSqliteFileError, match=r"^DATABASE_URL: SQLite database .*garbage\.db: not a SQLite"):
        make_app(replace(settings, database_url=f"sqlite:///{garbage}"))


def test_users_pool_timeout_is_503_and_leaks_nothing(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    tight = replace(sqlite_settings(make_users_db(["Ann"])), pool_size=1, max_overflow=0, pool_timeout=0.05)
    application = make_app(tight)
    engine = engine_of(application)
    client = application.test_client()

    with engine.connect():  # another request holds the only connection
        _assert_503(client.get("/users"))
        assert queue_pool(engine).checkedout() == 1

    assert queue_pool(engine).checkedout() == 0
    assert client.get("/users").data == b"Ann"


def test_users_unexpected_error_is_generic_500(
    app: Flask, client: FlaskClient, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def broken(*_: object) -> list[str]:
        raise RuntimeError("SELECT password FROM /var/task/secret")

    monkeypatch.setattr("app.web.users.fetch_users_after", broken)

    response = client.get("/users")

    assert response.status_code == 500
    assert response.content_type == "application/json"
    assert json.loads(response.data) == {
        "error": "internal_server_error",
        "message": "The server hit an unexpected error.",
    }
    assert b"secret" not in response.data
    logged = log_lines(capsys.readouterr().out)
    assert any("SELECT password" in line.get("exception", "") for line in logged)


def test_users_concurrent_requests_share_the_pool(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    # The local dev server is threaded; the pool must hand each thread its own connection.
    application = make_app(sqlite_settings(make_users_db(["Ann", "Ben"])))
    engine = engine_of(application)
    connects = count_connects(engine)
    bodies: list[bytes] = []

    def fetch() -> None:
        client = application.test_client()
        for _ in range(20):
            bodies.append(client.get("/users").data)

    threads = [threading.Thread(target=fetch) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert bodies == [b"Ann,Ben"] * 80
    assert 1 <= connects.count <= 4
    assert queue_pool(engine).checkedout() == 0


@pytest.mark.parametrize(
    ("accept", "content_type"),
    [
        pytest.param(None, "text/plain; charset=utf-8", id="none"),
        pytest.param("*/*", "text/plain; charset=utf-8", id="any"),
        pytest.param("text/*", "text/plain; charset=utf-8", id="any-text"),
        pytest.param("text/html, */*;q=0.1", "text/plain; charset=utf-8", id="browser"),
        pytest.param("application/json;q=0, */*", "text/plain; charset=utf-8", id="anything-but-json"),
        pytest.param("application/json;q=0.5, text/plain", "text/plain; charset=utf-8", id="text-preferred"),
        pytest.param("application/json", "application/json", id="json"),
        pytest.param("application/*", "application/json", id="any-application"),
        pytest.param("text/plain;q=0.5, application/json", "application/json", id="json-preferred"),
    ],
)
def test_users_accept_header_chooses_the_format(accept: str | None, content_type: str, client: FlaskClient) -> None:
    response = client.get("/users", headers={"Accept": accept} if accept else {})

    assert response.status_code == 200
    assert response.content_type == content_type
    assert response.headers["Vary"] == "Accept, Accept-Encoding"


def test_users_json_format_lists_names_and_null_next(client: FlaskClient) -> None:
    response = client.get("/users?format=json")

    assert response.content_type == "application/json"
    assert json.loads(response.data) == {"users": ["Alice", "Bob", "Carol", "Dave", "Eve"], "next": None}
    assert "Link" not in response.headers


def test_users_page_links_keep_limit_and_format(client: FlaskClient) -> None:
    first = client.get("/users?format=json&limit=2")
    second = client.get(first.headers["Link"][1 : first.headers["Link"].index(">")])
    third = client.get(second.headers["Link"][1 : second.headers["Link"].index(">")])

    assert [json.loads(page.data)["users"] for page in (first, second, third)] == [
        ["Alice", "Bob"],
        ["Carol", "Dave"],
        ["Eve"],
    ]
    cursor = json.loads(first.data)["next"]
    assert first.headers["Link"] == f'</users?after={cursor}&limit=2&format=json>; rel="next"'
    assert "Link" not in third.headers
    assert json.loads(third.data)["next"] is None


def test_users_text_quotes_only_names_that_need_it(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    names = ["plain", "a,b", 'say "hi"', "two\nlines", "", "Zoë"]
    client = make_app(sqlite_settings(make_users_db(names))).test_client()

    response = client.get("/users")

    assert response.get_data(as_text=True) == 'plain,"a,b","say ""hi""","two\nlines","",Zoë'


def test_users_max_page_limit_is_configurable(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    client = make_app(replace(sqlite_settings(make_users_db(["Ann", "Ben"])), max_page_limit=1)).test_client()

    assert client.get("/users?limit=1").data == b"Ann"
    response = client.get("/users?limit=2")
    assert response.status_code == 400
    assert json.loads(response.data)["message"] == "limit must be a whole number from 1 to 1."
