"""GET /users paged through `handler.handler`, for every event shape: links, limits, formats, errors."""

from __future__ import annotations

import contextlib
import json
import sqlite3
from collections.abc import Callable
from pathlib import Path

import pytest
from sqlalchemy import Engine

from app.adapter import LambdaHandler
from app.types import ALB_RESPONSE_LIMIT, LAMBDA_RESPONSE_LIMIT
from app.web.cursor import encode_cursor
from tests.support.engines import queue_pool
from tests.support.gateway import DEPLOYMENTS, Deployment, Fetched, walk
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_alb_event, make_v1_event, make_v2_event, response_headers
from tests.support.names import TRICKY_NAMES
from tests.support.tables import build_users_db

ServeDb = Callable[..., LambdaHandler]

# A small table where every page has tricky names in it.
SMALL_NAMES = [name for i in range(42) for name in (f"user{i}", *TRICKY_NAMES)]
# Too large for one ALB response (1 MB), small enough for one API Gateway response (6 MB).
MID_ROWS = 150_000

FORMATS = [
    pytest.param("", None, id="text"),
    pytest.param("", {"Accept": "application/json"}, id="json-by-accept"),
    pytest.param("format=json", None, id="json-by-parameter"),
    pytest.param("format=text", {"Accept": "application/json"}, id="text-by-parameter-over-accept"),
]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("small") / "users.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", [(name,) for name in SMALL_NAMES])
    connection.close()
    return path


@pytest.fixture(scope="module")
def mid_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("mid") / "users.db"
    return path, build_users_db(path, MID_ROWS)


def _deploy(serve_db: ServeDb, path: Path, deployment: Deployment, monkeypatch: pytest.MonkeyPatch) -> LambdaHandler:
    """A fresh container of `deployment` serving `path`, configured as on Lambda: API_GATEWAY_BASE_PATH
    in os.environ (serverless-wsgi reads it there per request) and in the Settings (read at cold start)."""
    if deployment.base_path is not None:
        monkeypatch.setenv("API_GATEWAY_BASE_PATH", deployment.base_path)
    return serve_db(path, api_gateway_base_path=deployment.base_path)


def _union(pages: list[Fetched]) -> list[str]:
    return [name for page in pages for name in page.names()]


@pytest.mark.parametrize(("query", "headers"), FORMATS)
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_users_limit_walk_gets_every_name_once_for_every_shape(
    deployment: Deployment,
    query: str,
    headers: dict[str, str] | None,
    small_db: Path,
    serve_db: ServeDb,
    monkeypatch: pytest.MonkeyPatch,
    served_engine: Callable[[], Engine],
) -> None:
    # GIVEN a client of this deployment, WHEN it walks /users?limit=100 by its next links
    handler = _deploy(serve_db, small_db, deployment, monkeypatch)

    pages = walk(handler, deployment, query="?limit=100" + (f"&{query}" if query else ""), headers=headers)

    # THEN it gets every name once, in order, 100 a page, with no link after the last
    assert _union(pages) == SMALL_NAMES
    assert [len(page.names()) for page in pages] == [100] * 10 + [len(SMALL_NAMES) - 1000]
    assert pages[-1].next_url is None
    # and every link stays under the client's own base URL (stage, base path), keeping its choices
    for page in pages[:-1]:
        next_url = page.next_url
        assert next_url is not None
        assert next_url.startswith(deployment.base_url + "?after=")
        assert next_url.endswith("&limit=100" + (f"&{query}" if query else ""))
    assert queue_pool(served_engine()).checkedout() == 0


@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_users_table_that_fits_is_one_response_without_link(
    deployment: Deployment, small_db: Path, serve_db: ServeDb, monkeypatch: pytest.MonkeyPatch
) -> None:
    pages = walk(_deploy(serve_db, small_db, deployment, monkeypatch), deployment)

    assert len(pages) == 1
    assert "link" not in pages[0].headers
    assert pages[0].names() == SMALL_NAMES
    assert pages[0].headers["vary"] == "Accept, Accept-Encoding"


@pytest.mark.parametrize(("query", "headers"), FORMATS[:2])
@pytest.mark.parametrize("deployment", DEPLOYMENTS)
def test_users_default_walk_stays_under_the_platform_limit(
    deployment: Deployment,
    query: str,
    headers: dict[str, str] | None,
    mid_db: tuple[Path, list[str]],
    serve_db: ServeDb,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # GIVEN 150,000 users (~1.5 MB of names): one API Gateway response, several ALB ones
    path, names = mid_db

    pages = walk(_deploy(serve_db, path, deployment, monkeypatch), deployment, headers=headers)

    assert _union(pages) == names
    sizes = [max(page.wire_sizes) for page in pages]
    assert max(sizes) <= deployment.response_limit
    if deployment.response_limit == ALB_RESPONSE_LIMIT:
        assert len(pages) >= 2
        assert min(sizes[:-1]) >= 0.97 * ALB_RESPONSE_LIMIT  # pages are full, not timid
    else:
        assert len(pages) == 1


# 2,000 names of control characters and emoji: 1.5 KB each in UTF-8, 6-6.5 KB each escaped.
WORST_CASE_NAMES = ["\x01" * 500 + "🚀" * 250 + str(i) for i in range(2_000)]


@pytest.fixture(scope="module")
def worst_case_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("worst") / "users.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", [(name,) for name in WORST_CASE_NAMES])
    connection.close()
    return path


@pytest.mark.parametrize(("query", "headers"), FORMATS[:2])
@pytest.mark.parametrize("deployment", [DEPLOYMENTS[0], DEPLOYMENTS[5]])
def test_users_budget_counts_escaped_bytes(
    deployment: Deployment,
    query: str,
    headers: dict[str, str] | None,
    worst_case_db: Path,
    serve_db: ServeDb,
) -> None:
    # GIVEN names that are 3 MB in UTF-8 but 12-13 MB once escaped in the response JSON
    pages = walk(serve_db(worst_case_db), deployment, headers=headers)

    # THEN no response is over the limit, counted as the runtime serialises it
    assert _union(pages) == WORST_CASE_NAMES
    assert max(max(page.wire_sizes) for page in pages) <= deployment.response_limit
    assert len(pages) > 1


def test_users_name_too_large_for_alb_is_json_500_not_a_502(
    tmp_path: Path, serve_db: ServeDb, served_engine: Callable[[], Engine]
) -> None:
    # GIVEN a name of 1.1 MB between two short ones
    path = tmp_path / "users.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", [("ok",), ("x" * 1_100_000,), ("after",)])
    connection.close()
    handler = serve_db(path)

    # WHEN walked through ALB (1 MB) and through API Gateway (6 MB)
    first = handler(make_alb_event(), FakeContext())
    link = response_headers(first)["link"]
    after = link[link.index("after=") + 6 : link.index(">")]
    second = handler(make_alb_event(query={"after": after}), FakeContext())
    rest = handler(make_v1_event(), FakeContext())

    # THEN ALB gets the first name, then a JSON 500 naming the problem; API Gateway all three
    assert (first["statusCode"], first["body"]) == (200, "ok")
    assert second["statusCode"] == 500
    assert json.loads(second["body"]) == {
        "error": "name_too_large",
        "message": "A user's name is too large to be sent in one response on this platform.",
    }
    assert (rest["statusCode"], len(rest["body"])) == (200, 1_100_009)
    assert queue_pool(served_engine()).checkedout() == 0


def test_users_head_of_a_page_has_its_link_and_an_empty_body(small_db: Path, serve_db: ServeDb) -> None:
    response = serve_db(small_db)(make_v1_event(method="HEAD", query={"limit": "5"}), FakeContext())

    assert response["statusCode"] == 200
    assert response["body"] == ""
    assert response_headers(response)["link"].startswith(f"</users?after={encode_cursor(5)}&limit=5>")


LIMIT_MESSAGE = "limit must be a whole number from 1 to 10000."
CURSOR_MESSAGE = "after must be a cursor taken unchanged from a next link or a JSON 'next'."
GOOD_CURSOR = encode_cursor(10)
EDITED_CURSOR = GOOD_CURSOR[:10] + ("A" if GOOD_CURSOR[10] != "A" else "B") + GOOD_CURSOR[11:]


@pytest.mark.parametrize(
    ("raw_query", "error", "message"),
    [
        pytest.param("limit=0", "invalid_limit", LIMIT_MESSAGE, id="limit-zero"),
        pytest.param("limit=-5", "invalid_limit", LIMIT_MESSAGE, id="limit-negative"),
        pytest.param("limit=10001", "invalid_limit", LIMIT_MESSAGE, id="limit-over-max"),
        pytest.param("limit=" + "9" * 400, "invalid_limit", LIMIT_MESSAGE, id="limit-huge"),
        pytest.param("limit=abc", "invalid_limit", LIMIT_MESSAGE, id="limit-text"),
        pytest.param("limit=", "invalid_limit", LIMIT_MESSAGE, id="limit-empty"),
        pytest.param("limit=1%3B%20DROP%20TABLE%20users", "invalid_limit", LIMIT_MESSAGE, id="limit-sql"),
        pytest.param("limit=1%20OR%201%3D1", "invalid_limit", LIMIT_MESSAGE, id="limit-sql-or"),
        pytest.param("after=", "invalid_cursor", CURSOR_MESSAGE, id="after-empty"),
        pytest.param("after=10", "invalid_cursor", CURSOR_MESSAGE, id="after-raw-key"),
        pytest.param("after=" + GOOD_CURSOR[:-1], "invalid_cursor", CURSOR_MESSAGE, id="after-truncated"),
        pytest.param("after=" + EDITED_CURSOR, "invalid_cursor", CURSOR_MESSAGE, id="after-forged"),
        pytest.param("after=%27%20OR%20%271%27%3D%271", "invalid_cursor", CURSOR_MESSAGE, id="after-sql"),
        pytest.param("after=%FF%FE", "invalid_cursor", CURSOR_MESSAGE, id="after-bad-utf8"),
        pytest.param("format=xml", "invalid_format", "format must be 'text' or 'json'.", id="format-unknown"),
        pytest.param("format=json%27%3B--", "invalid_format", "format must be 'text' or 'json'.", id="format-sql"),
        pytest.param(
            "limit=1&limit=2",
            "invalid_parameter",
            "Query parameter 'limit' is given more than once.",
            id="repeated",
        ),
    ],
)
def test_users_bad_parameters_are_json_400_and_leave_everything_intact(
    raw_query: str, error: str, message: str, small_db: Path, serve_db: ServeDb, served_engine: Callable[[], Engine]
) -> None:
    handler = serve_db(small_db)
    event = make_v2_event()
    event["rawQueryString"] = raw_query

    response = handler(event, FakeContext())

    assert response["statusCode"] == 400
    assert response_headers(response)["content-type"] == "application/json"
    assert json.loads(response["body"]) == {"error": error, "message": message}
    assert queue_pool(served_engine()).checkedout() == 0
    with contextlib.closing(sqlite3.connect(small_db)) as connection, connection:
        assert connection.execute("SELECT count(*) FROM users").fetchone() == (len(SMALL_NAMES),)
    connection.close()


def test_users_alb_percent_encoded_sql_is_400(
    small_db: Path, serve_db: ServeDb, served_engine: Callable[[], Engine]
) -> None:
    # ALB passes query strings undecoded; serverless-wsgi decodes them, so validation sees the SQL.
    event = make_alb_event(query={"limit": "1%3B%20DROP%20TABLE%20users"})

    response = serve_db(small_db)(event, FakeContext())

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "invalid_limit"
    assert queue_pool(served_engine()).checkedout() == 0


@pytest.mark.parametrize(
    "accept",
    ["text/html", "application/xml", "image/*", "text/plain;q=0, application/json;q=0", "text/csv"],
)
def test_users_unsatisfiable_accept_is_json_406(
    accept: str, small_db: Path, serve_db: ServeDb, served_engine: Callable[[], Engine]
) -> None:
    response = serve_db(small_db)(make_v1_event(headers={"Accept": accept}), FakeContext())

    assert response["statusCode"] == 406
    assert response_headers(response)["content-type"] == "application/json"
    assert json.loads(response["body"]) == {
        "error": "not_acceptable",
        "message": "GET /users sends text/plain or application/json; the Accept header allows neither.",
    }
    assert queue_pool(served_engine()).checkedout() == 0


def test_users_limits_are_the_platform_limits() -> None:
    assert (LAMBDA_RESPONSE_LIMIT, ALB_RESPONSE_LIMIT) == (6_000_000, 1_000_000)
