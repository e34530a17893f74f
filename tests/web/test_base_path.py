"""API_GATEWAY_BASE_PATH: a custom domain's base path mapping, applied to that domain's requests only.

serverless.yml puts the REST API and the HTTP API on one function, so with the base path set the
same container also serves the execute-api hosts (and may serve a function URL or an ALB): every
one of them must be served and linked at its own URLs.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pytest
from flask import Flask, request

from app.adapter import LambdaHandler, make_handler
from app.config import Settings
from tests.support.gateway import ALB_HOST, EXECUTE_API_HOST, FUNCTION_URL_HOST, Deployment, walk
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import Event, make_alb_event, make_function_url_event, make_v1_event, make_v2_event

ServeDb = Callable[..., LambdaHandler]

BASE_PATH = "api"
CUSTOM_DOMAIN = "users.example.com"
NAMES = [f"user{i}" for i in range(250)]


@pytest.fixture(scope="module")
def small_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("base-path") / "users.db"
    with contextlib.closing(sqlite3.connect(path)) as connection, connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", [(name,) for name in NAMES])
    return path


@pytest.fixture(autouse=True)
def _base_path(monkeypatch: pytest.MonkeyPatch) -> None:
    # As on Lambda: serverless-wsgi reads it from os.environ per request, the app from its Settings.
    monkeypatch.setenv("API_GATEWAY_BASE_PATH", BASE_PATH)


@pytest.fixture
def settings(settings: Settings) -> Settings:
    """The default settings with the base path, for `app`, `serve_db` and every handler made of them."""
    return replace(settings, api_gateway_base_path=BASE_PATH)


@pytest.fixture
def echo_handler(app: Flask) -> LambdaHandler:
    """The handler, plus a route answering the script root and path the app saw."""
    app.add_url_rule("/whereami", "whereami", lambda: request.script_root + "|" + request.path)
    app.add_url_rule("/echo/<path:rest>", "echo", lambda rest: request.script_root + "|" + request.path)
    return make_handler(app)


# (event, script root | path the app sees); None: 404.
ROUTING = [
    pytest.param(make_v1_event(path="/api/whereami", host=CUSTOM_DOMAIN), "/api|/whereami", id="rest-custom-domain"),
    pytest.param(make_v1_event(path="/api", host=CUSTOM_DOMAIN), None, id="rest-custom-domain-base-only"),
    pytest.param(make_v1_event(path="/apiwhereami", host=CUSTOM_DOMAIN), None, id="rest-custom-domain-not-a-segment"),
    pytest.param(make_v1_event(path="/whereami", host=CUSTOM_DOMAIN), "|/whereami", id="rest-custom-domain-no-base"),
    pytest.param(
        make_v1_event(path="/whereami", host=EXECUTE_API_HOST, stage="dev"), "/dev|/whereami", id="rest-execute-api"
    ),
    pytest.param(
        make_v1_event(path="/api/whereami", host=EXECUTE_API_HOST, stage="dev"), None, id="rest-execute-api-no-base"
    ),
    pytest.param(make_v2_event(path="/api/whereami", host=CUSTOM_DOMAIN), "/api|/whereami", id="http-custom-domain"),
    pytest.param(make_v2_event(path="/apiwhereami", host=CUSTOM_DOMAIN), None, id="http-custom-domain-not-a-segment"),
    pytest.param(make_v2_event(path="/whereami", host=EXECUTE_API_HOST), "|/whereami", id="http-execute-api"),
    pytest.param(
        make_v2_event(path="/prod/whereami", host=EXECUTE_API_HOST, stage="prod"),
        "/prod|/whereami",
        id="http-execute-api-named-stage",
    ),
    pytest.param(make_function_url_event(path="/whereami"), "|/whereami", id="function-url"),
    pytest.param(make_function_url_event(path="/api/whereami"), None, id="function-url-no-base"),
    # Behind CloudFront with its Host forwarded: still not an API Gateway custom domain mapping.
    pytest.param(
        make_function_url_event(path="/api/whereami", headers={"host": CUSTOM_DOMAIN}),
        None,
        id="function-url-own-domain-no-base",
    ),
    pytest.param(make_alb_event(path="/whereami", headers={"host": ALB_HOST}), "|/whereami", id="alb"),
    pytest.param(make_alb_event(path="/whereami", headers={"host": CUSTOM_DOMAIN}), "|/whereami", id="alb-own-domain"),
    pytest.param(
        make_alb_event(path="/api/whereami", headers={"host": CUSTOM_DOMAIN}), None, id="alb-own-domain-no-base"
    ),
]


@pytest.mark.parametrize(("event", "expected"), ROUTING)
def test_base_path_applies_to_custom_domain_requests_only(
    event: Event, expected: str | None, echo_handler: LambdaHandler
) -> None:
    response = echo_handler(event, FakeContext())

    if expected is None:
        assert response["statusCode"] == 404
    else:
        assert (response["statusCode"], response["body"]) == (200, expected)


@pytest.mark.parametrize("make_event", [make_v1_event, make_v2_event], ids=["rest", "http-api"])
def test_base_path_is_a_whole_segment_on_the_real_route(make_event: Callable[..., Event], app: Flask) -> None:
    handler = make_handler(app)

    served = handler(make_event(path="/api/users", host=CUSTOM_DOMAIN), FakeContext())
    not_a_segment = handler(make_event(path="/apiusers", host=CUSTOM_DOMAIN), FakeContext())

    assert (served["statusCode"], served["body"]) == (200, "Alice,Bob,Carol,Dave,Eve")
    assert not_a_segment["statusCode"] == 404


def test_base_path_on_custom_domain_keeps_the_rest_of_the_path_decoded(echo_handler: LambdaHandler) -> None:
    response = echo_handler(make_v1_event(path="/api/echo/caf%C3%A9%20au%20lait", host=CUSTOM_DOMAIN), FakeContext())

    assert (response["statusCode"], response["body"]) == (200, "/api|/echo/café au lait")


# Every way to reach the function with the base path set: links must stay on each one's own URLs.
BASE_PATH_DEPLOYMENTS = [
    pytest.param(
        Deployment(f"https://{CUSTOM_DOMAIN}/api/users", lambda **kw: make_v1_event(host=CUSTOM_DOMAIN, **kw)),
        id="rest-custom-domain",
    ),
    pytest.param(
        Deployment(
            f"https://{EXECUTE_API_HOST}/dev/users",
            lambda **kw: make_v1_event(host=EXECUTE_API_HOST, stage="dev", **kw),
            stage_prefix="/dev",
        ),
        id="rest-execute-api-keeps-stage",
    ),
    pytest.param(
        Deployment(f"https://{CUSTOM_DOMAIN}/api/users", lambda **kw: make_v2_event(host=CUSTOM_DOMAIN, **kw)),
        id="http-custom-domain",
    ),
    pytest.param(
        Deployment(f"https://{EXECUTE_API_HOST}/users", lambda **kw: make_v2_event(host=EXECUTE_API_HOST, **kw)),
        id="http-execute-api",
    ),
    pytest.param(
        Deployment(
            f"https://{EXECUTE_API_HOST}/prod/users",
            lambda **kw: make_v2_event(host=EXECUTE_API_HOST, stage="prod", **kw),
        ),
        id="http-execute-api-named-stage",
    ),
    pytest.param(Deployment(f"https://{FUNCTION_URL_HOST}/users", make_function_url_event), id="function-url"),
    pytest.param(
        Deployment(
            f"https://{ALB_HOST}/users",
            lambda headers=None, **kw: make_alb_event(headers={"host": ALB_HOST, **(headers or {})}, **kw),
            raw_query=True,
        ),
        id="alb",
    ),
]


@pytest.mark.parametrize("deployment", BASE_PATH_DEPLOYMENTS)
def test_base_path_links_stay_on_each_hosts_own_urls(deployment: Deployment, small_db: Path, serve_db: ServeDb) -> None:
    pages = walk(serve_db(small_db), deployment, query="?limit=100")

    assert [name for page in pages for name in page.names()] == NAMES
    assert len(pages) > 1
    for page in pages[:-1]:
        assert page.next_url is not None
        assert page.next_url.startswith(deployment.base_url + "?after="), page.headers["link"]
