"""CORS: off by default; allowed origins get the headers, preflights 204, every event kind."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml
from flask import Flask
from flask.testing import FlaskClient

from app.adapter import LambdaHandler
from app.config import Settings, SettingsError
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import HTTP_EVENT_BUILDERS, response_headers

ROOT = Path(__file__).resolve().parent.parent.parent
ALLOWED = "https://app.example.com"
PREFLIGHT = {
    "Origin": ALLOWED,
    "Access-Control-Request-Method": "GET",
    "Access-Control-Request-Headers": "if-none-match",
}


@pytest.fixture
def cors_client(settings: Settings, make_app: Callable[[Settings], Flask]) -> FlaskClient:
    origins = frozenset({ALLOWED, "http://localhost:8080"})
    return make_app(replace(settings, cors_allow_origins=origins)).test_client()


def test_cors_off_by_default_sends_no_cors_headers(client: FlaskClient) -> None:
    response = client.get("/users", headers={"Origin": ALLOWED})

    assert response.status_code == 200
    assert not [name for name, _ in response.headers.items() if name.lower().startswith("access-control-")]
    assert response.headers["Vary"] == "Accept, Accept-Encoding"


def test_cors_off_options_is_204_without_cors_headers(client: FlaskClient) -> None:
    response = client.options("/users", headers=PREFLIGHT)

    assert response.status_code == 204
    assert response.data == b""
    assert set(response.headers["Allow"].split(", ")) == {"GET", "HEAD", "OPTIONS"}
    assert "Access-Control-Allow-Origin" not in response.headers


@pytest.mark.parametrize("url", ["/users", "/users?limit=2", "/users?limit=0", "/nope", "/openapi.json"])
def test_cors_allowed_origin_gets_the_headers_on_every_response(cors_client: FlaskClient, url: str) -> None:
    response = cors_client.get(url, headers={"Origin": ALLOWED})

    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Expose-Headers"] == "Link, Retry-After, ETag"
    assert "Origin" in response.vary
    assert "Access-Control-Allow-Credentials" not in response.headers


@pytest.mark.parametrize(
    "origin", ["https://evil.example.com", "https://app.example.com.evil", "null", "HTTPS://APP.EXAMPLE.COM"]
)
def test_cors_other_origins_get_no_allow_origin_but_vary(cors_client: FlaskClient, origin: str) -> None:
    response = cors_client.get("/users", headers={"Origin": origin})
    preflight = cors_client.options("/users", headers={**PREFLIGHT, "Origin": origin})

    assert response.status_code == 200
    assert "Access-Control-Allow-Origin" not in response.headers
    assert "Origin" in response.vary  # a shared cache must not hand this to an allowed origin
    assert preflight.status_code == 204
    assert "Access-Control-Allow-Origin" not in preflight.headers
    assert "Access-Control-Allow-Methods" not in preflight.headers


def test_cors_no_origin_still_varies_on_it(cors_client: FlaskClient) -> None:
    response = cors_client.get("/users")

    assert "Access-Control-Allow-Origin" not in response.headers
    assert set(response.vary) == {"Accept", "Accept-Encoding", "Origin"}


def test_cors_preflight_from_allowed_origin(cors_client: FlaskClient) -> None:
    response = cors_client.options("/users", headers=PREFLIGHT)

    assert response.status_code == 204
    assert response.data == b""
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert response.headers["Access-Control-Allow-Methods"] == "GET, HEAD"
    assert response.headers["Access-Control-Allow-Headers"] == "Accept, If-None-Match"
    assert response.headers["Access-Control-Max-Age"] == "7200"
    assert "Origin" in response.vary


@pytest.mark.parametrize("method", ["POST", "DELETE", ""])
def test_cors_preflight_for_other_methods_is_not_allowed(cors_client: FlaskClient, method: str) -> None:
    response = cors_client.options("/users", headers={**PREFLIGHT, "Access-Control-Request-Method": method})

    assert response.status_code == 204
    assert "Access-Control-Allow-Methods" not in response.headers


def test_cors_304_carries_the_headers(cors_client: FlaskClient) -> None:
    etag = cors_client.get("/users").headers["ETag"]

    response = cors_client.get("/users", headers={"Origin": ALLOWED, "If-None-Match": etag})

    assert response.status_code == 304
    assert response.headers["Access-Control-Allow-Origin"] == ALLOWED
    assert set(response.vary) == {"Accept", "Accept-Encoding", "Origin"}


def test_cors_any_origin_sends_star(settings: Settings, make_app: Callable[[Settings], Flask]) -> None:
    client = make_app(replace(settings, cors_allow_origins=frozenset({"*"}))).test_client()

    response = client.get("/users", headers={"Origin": "https://anyone.example"})
    preflight = client.options("/users", headers={**PREFLIGHT, "Origin": "https://anyone.example"})

    assert response.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Origin"] == "*"
    assert preflight.headers["Access-Control-Allow-Methods"] == "GET, HEAD"


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_cors_preflight_and_get_on_every_event_kind(
    make_event: Callable[..., dict[str, Any]],
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
    context: FakeContext,
) -> None:
    handler = serve_app(make_app(replace(settings, cors_allow_origins=frozenset({ALLOWED}))))

    preflight = handler(make_event(method="OPTIONS", headers=PREFLIGHT), context)
    response = handler(make_event(headers={"Origin": ALLOWED}), context)

    assert preflight["statusCode"] == 204
    assert response_headers(preflight)["access-control-allow-origin"] == ALLOWED
    assert response_headers(preflight)["access-control-allow-methods"] == "GET, HEAD"
    assert response["statusCode"] == 200
    assert response_headers(response)["access-control-allow-origin"] == ALLOWED
    assert response_headers(response)["access-control-expose-headers"] == "Link, Retry-After, ETag"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("", frozenset()),
        ("*", frozenset({"*"})),
        (" * ", frozenset({"*"})),
        ("https://a.example", frozenset({"https://a.example"})),
        ("https://a.example, http://localhost:8080", frozenset({"https://a.example", "http://localhost:8080"})),
        ("http://127.0.0.1:3000,http://[::1]:3000", frozenset({"http://127.0.0.1:3000", "http://[::1]:3000"})),
    ],
)
def test_cors_setting_parses(raw: str, expected: frozenset[str]) -> None:
    assert Settings.from_env({"CORS_ALLOW_ORIGINS": raw}).cors_allow_origins == expected


@pytest.mark.parametrize(
    "raw",
    [
        "https://a.example/",
        "https://a.example/path",
        "a.example",
        "ftp://a.example",
        "https://A.example",
        "https://a.example:443",
        "http://a.example:80",
        "https://a.example:99999",
        "https://a.example,*",
        "https://a.example,,https://b.example",
        "https://user@a.example",
        "https://a.example?x=1",
        "null",
    ],
)
def test_cors_setting_refuses_what_no_browser_sends(raw: str) -> None:
    with pytest.raises(SettingsError, match="CORS_ALLOW_ORIGINS"):
        Settings.from_env({"CORS_ALLOW_ORIGINS": raw})


def test_cors_preflights_reach_the_function_on_every_api() -> None:
    """OPTIONS (and HEAD) /users must be routed to the function, not answered by API Gateway."""
    config = yaml.safe_load((ROOT / "serverless.yml").read_text(encoding="utf-8"))
    events = config["functions"]["api"]["events"]
    rest = [event["http"] for event in events if "http" in event]
    http_api = [event["httpApi"] for event in events if "httpApi" in event]

    # REST: a resource answers only its own methods (403 otherwise; no fallback to {proxy+}).
    assert {"method": "ANY", "path": "/users"} in rest
    assert not [route for route in rest if route["path"] == "/users" and route["method"] != "ANY"]
    # HTTP API: the $default route gets OPTIONS unless API Gateway's own CORS is configured.
    assert "*" in http_api
    assert "cors" not in (config["provider"].get("httpApi") or {})
