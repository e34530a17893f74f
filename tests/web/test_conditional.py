"""Conditional GET: strong ETags on 200s, 304 for a matching If-None-Match, on every event kind."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.adapter import LambdaHandler
from app.config import Settings
from app.storage import DATABASE_KEY
from tests.support.engines import StatementCounter, engine_of
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import HTTP_EVENT_BUILDERS, make_v1_event, response_headers
from tests.support.tables import SEED_NAMES, MakeUsersDb


@pytest.fixture
def statements(app: Flask) -> Iterator[StatementCounter]:
    counter = StatementCounter(engine_of(app))
    yield counter
    counter.close()


def _etag(client: FlaskClient, url: str = "/users", **headers: str) -> str:
    response = client.get(url, headers=headers)
    assert response.status_code == 200
    etag = response.headers["ETag"]
    return etag


@pytest.mark.parametrize("url", ["/users", "/users?format=json", "/users?limit=2", "/users?limit=2&format=text"])
def test_conditional_every_200_has_a_strong_etag(client: FlaskClient, url: str) -> None:
    etag = _etag(client, url)

    assert etag.startswith('"') and etag.endswith('"') and len(etag) > 2  # strong: no W/ prefix
    assert client.get(url).headers["ETag"] == etag  # stable


def test_conditional_etag_differs_by_everything_that_changes_the_response(client: FlaskClient) -> None:
    next_cursor = client.get("/users?limit=2&format=json").get_json()["next"]
    tags = {
        _etag(client, "/users"),
        _etag(client, "/users?format=json"),
        _etag(client, "/users", Accept="application/json"),
        _etag(client, "/users?limit=2"),
        _etag(client, "/users?limit=3"),
        _etag(client, f"/users?limit=2&after={next_cursor}"),
        # Same body as /users?limit=2, but its Link carries format=text.
        _etag(client, "/users?limit=2&format=text"),
    }

    assert len(tags) == 7
    # A parameter the response ignores does not change it.
    assert _etag(client, "/users?utm_source=x") == _etag(client, "/users")


@pytest.mark.parametrize("method", ["GET", "HEAD"])
@pytest.mark.parametrize(
    "if_none_match",
    [
        "{etag}",
        "W/{etag}",  # weak comparison: a weak validator of the same tag matches
        '"something-else", {etag}',
        '"a",W/"b", {etag} ,"c"',
        "*",
    ],
)
def test_conditional_matching_if_none_match_is_304_without_reading(
    client: FlaskClient, statements: StatementCounter, method: str, if_none_match: str
) -> None:
    etag = _etag(client)
    statements.count = 0

    response = client.open("/users", method=method, headers={"If-None-Match": if_none_match.format(etag=etag)})

    assert response.status_code == 304
    assert response.data == b""
    assert response.headers["ETag"] == etag
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert "Content-Type" not in response.headers
    assert statements.count == 0  # the bundled database's identity answered it


@pytest.mark.parametrize("if_none_match", ['"other"', 'W/"other"', '"a", "b"', "garbage", '""'])
def test_conditional_other_tags_get_the_full_response(client: FlaskClient, if_none_match: str) -> None:
    response = client.get("/users", headers={"If-None-Match": if_none_match})

    assert response.status_code == 200
    assert response.get_data(as_text=True) == SEED_NAMES


def test_conditional_tag_of_another_format_does_not_match(client: FlaskClient) -> None:
    json_etag = _etag(client, "/users?format=json")

    response = client.get("/users", headers={"If-None-Match": json_etag})

    assert response.status_code == 200


@pytest.mark.parametrize(
    ("url", "headers", "status"),
    [
        ("/users?limit=0", {}, 400),
        ("/users", {"Accept": "image/png"}, 406),
    ],
)
def test_conditional_errors_stay_errors_with_star(
    client: FlaskClient, url: str, headers: dict[str, str], status: int
) -> None:
    response = client.get(url, headers={"If-None-Match": "*", **headers})

    assert response.status_code == status
    assert "ETag" not in response.headers


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_conditional_304_on_every_event_kind(
    make_event: Callable[..., dict[str, Any]], lambda_handler: LambdaHandler, context: FakeContext, method: str
) -> None:
    first = lambda_handler(make_event(method=method), context)
    etag = response_headers(first)["etag"]

    response = lambda_handler(make_event(method=method, headers={"If-None-Match": etag}), context)

    assert first["statusCode"] == 200
    assert response["statusCode"] == 304
    assert response["body"] == ""
    assert response_headers(response)["etag"] == etag
    assert response_headers(response)["vary"] == "Accept, Accept-Encoding"


def test_conditional_etag_follows_the_response_limit_and_the_stage(
    lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    from tests.support.lambda_events import make_alb_event, make_v2_event

    rest = response_headers(lambda_handler(make_v1_event(host="abc.execute-api.us-east-1.amazonaws.com"), context))
    other_stage = response_headers(
        lambda_handler(make_v1_event(host="abc.execute-api.us-east-1.amazonaws.com", stage="prod"), context)
    )
    http_api = response_headers(lambda_handler(make_v2_event(), context))
    alb = response_headers(lambda_handler(make_alb_event(), context))

    # The stage is in every Link; the ALB's 1 MB limit cuts pages elsewhere than 6 MB.
    assert len({rest["etag"], other_stage["etag"], http_api["etag"], alb["etag"]}) == 4


def test_conditional_mutable_database_tags_the_body(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    path = make_users_db(["Ann", "Ben"])
    application = make_app(sqlite_settings(path))
    assert application.extensions[DATABASE_KEY].content_id is None  # a DATABASE_URL may change
    client = application.test_client()
    etag = _etag(client)

    unchanged = client.get("/users", headers={"If-None-Match": etag})
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO users (name) VALUES ('Cid')")
    connection.close()
    changed = client.get("/users", headers={"If-None-Match": etag})

    assert unchanged.status_code == 304
    assert unchanged.data == b""
    assert unchanged.headers["ETag"] == etag
    assert changed.status_code == 200
    assert changed.get_data(as_text=True) == "Ann,Ben,Cid"
    assert changed.headers["ETag"] != etag


def test_conditional_bundle_identity_is_the_file_hash(
    make_users_db: MakeUsersDb, settings: Settings, make_app: Callable[[Settings], Flask]
) -> None:
    first = make_app(replace(settings, bundled_db_path=make_users_db(["Ann"], filename="a.db")))
    second = make_app(
        replace(
            settings,
            bundled_db_path=make_users_db(["Ann", "Ben"], filename="b.db"),
            sqlite_copy_path=settings.sqlite_copy_path.with_name("b-copy.db"),
        )
    )

    first_etag = _etag(first.test_client())
    second_etag = _etag(second.test_client())

    assert first.extensions[DATABASE_KEY].content_id.startswith("bundle:")
    assert first_etag != second_etag
    # A new container of the same deployment gives the same tag.
    third = make_app(
        replace(
            settings,
            bundled_db_path=make_users_db(["Ann"], filename="c.db"),
            sqlite_copy_path=settings.sqlite_copy_path.with_name("c-copy.db"),
        )
    )
    assert _etag(third.test_client()) == first_etag
