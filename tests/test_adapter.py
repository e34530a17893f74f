"""The Lambda handler (`make_handler`, and handler.py built with it) driven with Lambda events."""

from __future__ import annotations

import ast
import contextlib
import gc
import importlib
import json
import re
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import pytest
import serverless_wsgi
from flask import Flask, request
from sqlalchemy.pool import QueuePool, SingletonThreadPool

from app import adapter, compat_serverless_wsgi
from app.adapter import EventSource, LambdaHandler, classify_event, log_request, make_handler
from app.config import Settings
from app.logs import configure_logging
from app.storage import DATABASE_KEY
from tests.support.engines import count_connects, engine_of, queue_pool
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import (
    HTTP_EVENT_BUILDERS,
    make_alb_event,
    make_function_url_event,
    make_v1_event,
    make_v2_event,
    response_headers,
)
from tests.support.logs import log_lines
from tests.support.payloads import SAMPLE_EVENTS_DIR, aws_sample_names, load_event
from tests.support.tables import MakeUsersDb

SEED_NAMES = "Alice,Bob,Carol,Dave,Eve"


class _StrongETag:
    """Equal to any strong entity tag as the app writes them (tests/web/test_conditional.py tests their values)."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, str) and re.fullmatch(r'"[A-Za-z0-9_-]{22}"', other) is not None

    def __repr__(self) -> str:
        return "<a strong ETag>"


STRONG_ETAG: Any = _StrongETag()


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_handler_serves_users_for_every_event_shape(
    make_event: Callable[..., dict[str, Any]], lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    response = lambda_handler(make_event(), context)

    assert response["statusCode"] == 200
    assert response["body"] == SEED_NAMES
    assert response["isBase64Encoded"] is False
    assert response_headers(response)["content-type"] == "text/plain; charset=utf-8"
    assert response_headers(response)["content-length"] == str(len(SEED_NAMES))


def test_handler_answers_rest_v1_sample_whole(lambda_handler: LambdaHandler, context: FakeContext) -> None:
    response = lambda_handler(load_event("rest-v1"), context)

    assert response == {
        "statusCode": 200,
        "multiValueHeaders": {
            "Content-Type": ["text/plain; charset=utf-8"],
            "Content-Length": ["24"],
            "Vary": ["Accept, Accept-Encoding"],
            "ETag": [STRONG_ETAG],
        },
        "body": SEED_NAMES,
        "isBase64Encoded": False,
    }


def test_handler_answers_http_api_sample_whole(lambda_handler: LambdaHandler, context: FakeContext) -> None:
    response = lambda_handler(load_event("http-api-v2"), context)

    assert response == {
        "statusCode": 200,
        "headers": {
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Length": "24",
            "Vary": "Accept, Accept-Encoding",
            "ETag": STRONG_ETAG,
        },
        "body": SEED_NAMES,
        "isBase64Encoded": False,
    }


def test_handler_answers_alb_samples_with_status_description(
    lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    single = lambda_handler(load_event("alb"), context)
    multi = lambda_handler(load_event("alb-multi-value"), context)

    assert single == {
        "statusCode": 200,
        "statusDescription": "200 OK",
        "headers": {
            "Content-Type": "text/plain; charset=utf-8",
            "Content-Length": "24",
            "Vary": "Accept, Accept-Encoding",
            "ETag": STRONG_ETAG,
        },
        "body": SEED_NAMES,
        "isBase64Encoded": False,
    }
    assert multi["multiValueHeaders"] == {
        "Content-Type": ["text/plain; charset=utf-8"],
        "Content-Length": ["24"],
        "Vary": ["Accept, Accept-Encoding"],
        "ETag": [STRONG_ETAG],
    }
    assert multi["statusDescription"] == "200 OK"


def test_handler_answers_function_url_sample(lambda_handler: LambdaHandler, context: FakeContext) -> None:
    response = lambda_handler(load_event("function-url"), context)

    assert (response["statusCode"], response["body"]) == (200, SEED_NAMES)


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_handler_head_has_headers_and_an_empty_body(
    make_event: Callable[..., dict[str, Any]], lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    response = lambda_handler(make_event(method="HEAD"), context)

    assert response["statusCode"] == 200
    # serverless-wsgi leaves both out for an empty body; AWS's examples always carry them.
    assert (response["body"], response["isBase64Encoded"]) == ("", False)
    assert response_headers(response)["content-length"] == str(len(SEED_NAMES))


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_handler_unknown_path_is_json_404(
    make_event: Callable[..., dict[str, Any]], lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    response = lambda_handler(make_event(path="/nope"), context)

    assert response["statusCode"] == 404
    assert response_headers(response)["content-type"] == "application/json"
    assert json.loads(response["body"])["error"] == "not_found"


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_handler_wrong_method_is_json_405_with_allow(
    make_event: Callable[..., dict[str, Any]], lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    response = lambda_handler(make_event(method="DELETE"), context)

    assert response["statusCode"] == 405
    headers = response_headers(response)
    assert headers["content-type"] == "application/json"
    assert sorted(headers["allow"].split(", ")) == ["GET", "HEAD", "OPTIONS"]
    assert json.loads(response["body"]) == {
        "error": "method_not_allowed",
        "message": "The method is not allowed for the requested URL.",
    }


def _with_url_echo(application: Flask) -> Flask:
    """`application` plus a route echoing the URL it was reached at (script root + path)."""
    application.add_url_rule("/whereami", "whereami", lambda: request.script_root + "|" + request.path)
    return application


@pytest.fixture
def url_echo_app(app: Flask) -> Flask:
    return _with_url_echo(app)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(
            make_v1_event(path="/whereami", host="a1.execute-api.us-east-1.amazonaws.com", stage="dev"),
            "/dev|/whereami",
            id="rest-execute-api-stage",
        ),
        pytest.param(make_v1_event(path="/whereami", host="api.example.com"), "|/whereami", id="rest-custom-domain"),
        pytest.param(
            make_v2_event(path="/whereami", host="a1.execute-api.us-east-1.amazonaws.com"),
            "|/whereami",
            id="http-api-default-stage",
        ),
        pytest.param(
            make_v2_event(path="/prod/whereami", host="a1.execute-api.us-east-1.amazonaws.com", stage="prod"),
            "/prod|/whereami",
            id="http-api-named-stage",
        ),
        pytest.param(
            make_alb_event(path="/whereami", headers={"host": "lb-1.us-east-1.elb.amazonaws.com"}),
            "|/whereami",
            id="alb-amazonaws-host",
        ),
        pytest.param(make_function_url_event(path="/whereami"), "|/whereami", id="function-url"),
    ],
)
def test_handler_routes_under_stage_paths(
    event: dict[str, Any],
    expected: str,
    url_echo_app: Flask,
    context: FakeContext,
) -> None:
    handler = make_handler(url_echo_app)

    response = handler(event, context)

    assert (response["statusCode"], response["body"]) == (200, expected)


def test_handler_strips_custom_domain_base_path(
    make_app: Callable[[Settings], Flask], settings: Settings, monkeypatch: pytest.MonkeyPatch, context: FakeContext
) -> None:
    # As on Lambda: serverless-wsgi reads the variable per request, the app its Settings at cold start.
    monkeypatch.setenv("API_GATEWAY_BASE_PATH", "api")
    handler = make_handler(_with_url_echo(make_app(replace(settings, api_gateway_base_path="api"))))

    response = handler(make_v1_event(path="/api/whereami", host="api.example.com"), context)

    assert (response["statusCode"], response["body"]) == (200, "/api|/whereami")


def test_handler_reads_the_base_path_once_at_cold_start(
    make_app: Callable[[Settings], Flask], settings: Settings, monkeypatch: pytest.MonkeyPatch, context: FakeContext
) -> None:
    # GIVEN a container started with API_GATEWAY_BASE_PATH=api
    monkeypatch.setenv("API_GATEWAY_BASE_PATH", "api")
    started = Settings.from_env().api_gateway_base_path
    handler = make_handler(_with_url_echo(make_app(replace(settings, api_gateway_base_path=started))))
    # WHEN the variable changes afterwards (Lambda's environment cannot)
    monkeypatch.setenv("API_GATEWAY_BASE_PATH", "v2")

    custom_domain = handler(make_v1_event(path="/api/whereami", host="api.example.com"), context)
    other_prefix = handler(make_v1_event(path="/v2/whereami", host="api.example.com"), context)

    # THEN requests are served under the base path of the cold start
    assert (custom_domain["statusCode"], custom_domain["body"]) == (200, "/api|/whereami")
    assert other_prefix["statusCode"] == 404


def test_handler_strip_stage_path_serves_execute_api_at_root(
    url_echo_app: Flask, monkeypatch: pytest.MonkeyPatch, context: FakeContext
) -> None:
    handler = make_handler(url_echo_app)
    monkeypatch.setenv("STRIP_STAGE_PATH", "true")

    response = handler(make_v1_event(path="/whereami", host="a1.execute-api.us-east-1.amazonaws.com"), context)

    assert (response["statusCode"], response["body"]) == (200, "|/whereami")


@pytest.mark.parametrize("name", ["warmup-plugin", "scheduled"])
def test_handler_warmup_event_returns_empty_without_touching_db(
    name: str, lambda_handler: LambdaHandler, app: Flask, context: FakeContext
) -> None:
    connects = count_connects(engine_of(app))

    response = lambda_handler(load_event(name), context)

    assert response == {}
    assert connects.count == 0
    assert queue_pool(engine_of(app)).checkedin() == 0


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({}, id="empty"),
        pytest.param(load_event("sqs"), id="sqs"),
        pytest.param(load_event("s3"), id="s3"),
        pytest.param(["not", "an", "object"], id="list"),
        pytest.param("GET /users", id="string"),
        pytest.param(None, id="null"),
        pytest.param({"httpMethod": "GET", "path": "/users", "headers": "Host: x"}, id="v1-headers-not-object"),
        pytest.param({"version": "2.0", "rawPath": "/users", "headers": {}}, id="v2-without-request-context"),
        pytest.param(
            {"version": "2.0", "rawPath": "/users", "requestContext": {"http": {"method": "GET"}}, "headers": []},
            id="v2-headers-not-object",
        ),
        pytest.param({"requestPath": "/users", "method": "GET", "headers": {}}, id="lambda-integration"),
    ],
)
def test_handler_answers_non_http_event_with_logged_400(
    event: Any, lambda_handler: LambdaHandler, context: FakeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    response = lambda_handler(event, context)

    assert response["statusCode"] == 400
    assert response["headers"] == {"Content-Type": "application/json"}
    assert json.loads(response["body"])["error"] == "unsupported_event"
    errors = [line for line in log_lines(capsys.readouterr().out) if line["level"] == "ERROR"]
    assert [line["message"] for line in errors] == ["unsupported event"]
    assert errors[0]["request_id"] == context.aws_request_id


def test_handler_answers_undecodable_event_with_json_400(
    lambda_handler: LambdaHandler, context: FakeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    # Claims base64 but is not: serverless-wsgi raises while decoding, before the app runs.
    event = make_v1_event(method="POST", body="%%% not base64 %%%")
    event["isBase64Encoded"] = True

    response = lambda_handler(event, context)

    assert response["statusCode"] == 400
    assert json.loads(response["body"]) == {
        "error": "invalid_event",
        "message": "The HTTP event is malformed and cannot be served as a request.",
    }
    warning = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "invalid event")
    assert warning["level"] == "WARNING"


def test_handler_answers_adapter_failure_after_the_app_with_json_500(
    lambda_handler: LambdaHandler,
    context: FakeContext,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The app answered; turning its response into the proxy shape fails: a bug here, not the caller's.
    def broken(*_: Any) -> dict[str, Any]:
        raise RuntimeError("SELECT secret FROM /var/task/app")

    monkeypatch.setattr(serverless_wsgi, "generate_response", broken)

    response = lambda_handler(make_v1_event(), context)

    assert response["statusCode"] == 500
    assert json.loads(response["body"])["error"] == "internal_server_error"
    assert "SELECT" not in response["body"]
    failure = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "invocation failed")
    assert "Traceback" in failure["exception"]


def test_handler_logs_one_json_line_per_invocation(
    lambda_handler: LambdaHandler, context: FakeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    capsys.readouterr()

    lambda_handler(make_v1_event(), context)
    lambda_handler(make_v2_event(method="POST"), FakeContext(aws_request_id="second"))

    lines = log_lines(capsys.readouterr().out)
    assert len(lines) == 2
    first, second = lines
    assert {key: first[key] for key in ("request_id", "cold_start", "source", "method", "path", "status")} == {
        "request_id": context.aws_request_id,
        "cold_start": True,
        "source": "apigw-rest",
        "method": "GET",
        "path": "/users",
        "status": 200,
    }
    assert first["pool_size"] == 5
    assert first["pool_checked_out"] == 0
    assert first["pool_overflow"] == 0
    assert isinstance(first["duration_ms"], float)
    assert first["duration_ms"] > 0
    assert (second["request_id"], second["cold_start"], second["status"]) == ("second", False, 405)


def test_handler_reuses_one_pooled_connection_across_warm_invocations(
    lambda_handler: LambdaHandler, app: Flask, context: FakeContext
) -> None:
    connects = count_connects(engine_of(app))

    for _ in range(25):
        response = lambda_handler(make_v2_event(), context)
        assert response["statusCode"] == 200
        assert queue_pool(engine_of(app)).checkedout() == 0

    assert connects.count == 1


def test_handler_returns_connection_to_pool_when_query_fails(
    make_users_db: MakeUsersDb,
    sqlite_settings: Callable[[Path], Settings],
    make_app: Callable[[Settings], Flask],
    context: FakeContext,
) -> None:
    db_path = make_users_db(["Zed"])
    application = make_app(sqlite_settings(db_path))
    handler = make_handler(application)
    connects = count_connects(engine_of(application))
    assert handler(make_v1_event(), context)["body"] == "Zed"

    with contextlib.closing(sqlite3.connect(db_path)) as connection, connection:
        connection.execute("ALTER TABLE users RENAME TO people")
    connection.close()

    for _ in range(3):
        response = handler(make_v1_event(), context)
        assert response["statusCode"] == 503
        assert queue_pool(engine_of(application)).checkedout() == 0

    assert connects.count == 1


@pytest.fixture(scope="module")
def handler_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """handler.py itself, imported once as Lambda would, with its /tmp copy in a temp dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SQLITE_COPY_PATH", str(tmp_path_factory.mktemp("lambda-tmp") / "users.db"))
        patch.delenv("DATABASE_URL", raising=False)
        module = importlib.import_module("handler")
    yield module
    module.app.extensions[DATABASE_KEY].dispose()


def test_handler_module_serves_an_event(handler_module: ModuleType, context: FakeContext) -> None:
    response = handler_module.handler(make_v1_event(), context)

    assert (response["statusCode"], response["body"]) == (200, SEED_NAMES)


def test_handler_is_not_in_debug_mode(handler_module: ModuleType) -> None:
    assert handler_module.app.debug is False
    assert handler_module.app.testing is False


def test_handler_module_pools_five_plus_ten_by_default(handler_module: ModuleType) -> None:
    pool = engine_of(handler_module.app).pool

    assert isinstance(pool, QueuePool)
    assert (pool.size(), pool._max_overflow) == (5, 10)


def test_handler_init_freezes_what_it_built_and_collects_again(handler_module: ModuleType) -> None:
    # Frozen objects sit in the permanent generation, outside the ones the collector walks.
    assert gc.isenabled()
    assert gc.get_freeze_count() > 0
    assert not any(obj is handler_module.app for obj in gc.get_objects())


def test_handler_serves_bundled_copy_read_only(handler_module: ModuleType) -> None:
    url = engine_of(handler_module.app).url

    assert url.query == {"mode": "ro", "uri": "true"}
    assert url.database is not None
    assert url.database.endswith("/users.db")


def test_handler_rest_root_with_empty_path_is_404_not_redirect(
    lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    # serverless-offline sends path "" for GET /dev; Werkzeug would redirect it to https://host/.
    response = lambda_handler(load_event("offline-rest-v1-root"), context)

    assert response["statusCode"] == 404
    assert json.loads(response["body"])["error"] == "not_found"


def test_handler_serves_serverless_offline_v2_event(lambda_handler: LambdaHandler, context: FakeContext) -> None:
    response = lambda_handler(load_event("offline-http-api-v2-post"), context)

    assert response["statusCode"] == 404
    assert response_headers(response)["content-type"] == "application/json"


def test_handler_logs_null_pool_by_name(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    context: FakeContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = make_handler(make_app(replace(settings, db_pool="null")))
    capsys.readouterr()

    assert handler(make_v1_event(), context)["body"] == SEED_NAMES

    (line,) = log_lines(capsys.readouterr().out)
    assert (line["message"], line["pool"], line["status"]) == ("invocation", "NullPool", 200)
    assert "pool_size" not in line


class _CountingPool:
    """A pool with a queue pool's counters, and no SQLAlchemy in it: the log line reads them by name."""

    def size(self) -> int:
        return 3

    def checkedout(self) -> int:
        return 2

    def overflow(self) -> int:
        return -1  # counted from -size, as QueuePool does: none beyond the pool


def _never_connects() -> Any:
    raise AssertionError("the log line opens no connection")


@dataclass
class _Engine:
    pool: object


@dataclass
class _Database:
    engine: _Engine | None


@pytest.mark.parametrize(
    ("engine", "fields"),
    [
        pytest.param(
            _Engine(_CountingPool()), {"pool_size": 3, "pool_checked_out": 2, "pool_overflow": 0}, id="counters"
        ),
        # Its `size` is an int, not a method: a pool without the counters, named.
        pytest.param(
            _Engine(SingletonThreadPool(_never_connects)),
            {"pool": "SingletonThreadPool"},
            id="other",
        ),
        pytest.param(None, {}, id="no-engine-yet"),
    ],
)
def test_log_request_takes_pool_figures_from_any_database_with_an_engine(
    engine: _Engine | None, fields: dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("INFO", "json")
    capsys.readouterr()

    log_request(_Database(engine), "local", "GET", "/users", 200, time.perf_counter())

    (line,) = log_lines(capsys.readouterr().out)
    assert (line["message"], line["source"], line["status"]) == ("invocation", "local", 200)
    assert {name: value for name, value in line.items() if name.startswith("pool")} == fields


@pytest.mark.parametrize(
    "event",
    [
        pytest.param({"httpMethod": "GET", "path": "/users"}, id="v1"),
        pytest.param({"version": "2.0", "rawPath": "/users", "requestContext": {"http": {"method": "GET"}}}, id="v2"),
        pytest.param(
            {"httpMethod": "GET", "path": "/users", "headers": None, "multiValueHeaders": None}, id="v1-nulls"
        ),
    ],
)
def test_handler_serves_minimal_hand_written_events(
    event: dict[str, Any], lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    original = json.dumps(event, sort_keys=True)

    response = lambda_handler(event, context)

    assert (response["statusCode"], response["body"]) == (200, SEED_NAMES)
    assert json.dumps(event, sort_keys=True) == original  # the caller's event is not modified


def test_handler_serves_function_url_with_null_authorizer(lambda_handler: LambdaHandler, context: FakeContext) -> None:
    # What the Lambda guide says a function URL with auth type NONE sends.
    event = make_function_url_event()
    event["requestContext"]["authorizer"] = None

    response = lambda_handler(event, context)

    assert (response["statusCode"], response["body"]) == (200, SEED_NAMES)


@pytest.mark.parametrize("source", [["serverless-plugin-warmup"], {}, 7])
def test_handler_answers_non_string_source_with_400(
    source: Any, lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    response = lambda_handler({"source": source}, context)

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "unsupported_event"


@pytest.mark.parametrize(
    ("stage", "link"),
    [
        pytest.param("prod", "</prod/users?after=AQAAAAAAAAACEDt_HBtt&limit=2>", id="plain"),
        pytest.param(
            'x>; rel="prev", <https://evil.example/',
            "</x%3E%3B%20rel%3D%22prev%22%2C%20%3Chttps%3A//evil.example/users?after=AQAAAAAAAAACEDt_HBtt&limit=2>",
            id="injection",
        ),
        pytest.param("/evil.example", "</evil.example/users?after=AQAAAAAAAAACEDt_HBtt&limit=2>", id="scheme-relative"),
    ],
)
def test_handler_link_escapes_the_stage(
    stage: str, link: str, lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    event = make_v1_event(host="abc123.execute-api.us-east-1.amazonaws.com", stage=stage, query={"limit": "2"})

    response = lambda_handler(event, context)

    assert response["statusCode"] == 200
    assert response_headers(response)["link"] == f'{link}; rel="next"'


def test_handler_link_keeps_serverless_offline_stage(lambda_handler: LambdaHandler, context: FakeContext) -> None:
    # serverless-offline serves REST routes under /<stage> on a loopback host and marks its events.
    event = load_event("offline-rest-v1-root")
    event.update(path="/users", resource="/users", queryStringParameters={"limit": "2"})
    event["multiValueQueryStringParameters"] = {"limit": ["2"]}

    response = lambda_handler(event, context)

    assert response["statusCode"] == 200
    assert response_headers(response)["link"].startswith("</dev/users?after=")


@pytest.mark.parametrize("multi_value", [pytest.param(False, id="alb"), pytest.param(True, id="alb-multi-value")])
def test_handler_invalid_alb_event_gets_the_shape_alb_accepts(
    multi_value: bool, lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    # An ALB target group with multi-value headers on accepts only multiValueHeaders; ALB wants statusDescription.
    event = make_alb_event(multi_value=multi_value, method="POST")
    event["body"], event["isBase64Encoded"] = "abcde", True  # not base64

    response = lambda_handler(event, context)

    assert response["statusCode"] == 400
    assert response["statusDescription"] == "400 Bad Request"
    headers_field = "multiValueHeaders" if multi_value else "headers"
    assert set(response) == {"statusCode", "statusDescription", headers_field, "body", "isBase64Encoded"}
    assert json.loads(response["body"])["error"] == "invalid_event"


@pytest.mark.parametrize(
    "build",
    [
        pytest.param(lambda value: make_v1_event(headers={"X-Note": value}), id="rest"),
        pytest.param(lambda value: make_v1_event(headers={"X-Note": value}, multi_value=True), id="rest-multi-value"),
        pytest.param(lambda value: make_v2_event(headers={"x-note": value}), id="http-api"),
    ],
)
@pytest.mark.parametrize("value", ["a\r\nSet-Cookie: x=1", "a\nb", "a\rb"])
def test_handler_header_value_with_a_line_break_is_400_json(
    build: Callable[[str], dict[str, Any]], value: str, lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    # werkzeug's Headers refuses it inside serverless-wsgi, before the app: our 400, not a 500.
    response = lambda_handler(build(value), context)

    assert response["statusCode"] == 400
    assert json.loads(response["body"])["error"] == "invalid_event"
    assert "Set-Cookie" not in response_headers(response)


def test_handler_takes_request_id_from_the_event_under_serverless_offline(
    lambda_handler: LambdaHandler, capsys: pytest.CaptureFixture[str]
) -> None:
    # serverless-offline's Python runner says aws_request_id "1234567890" for every invocation.
    offline = FakeContext(aws_request_id="1234567890")
    rest = load_event("offline-rest-v1-root")
    capsys.readouterr()

    lambda_handler(rest, offline)
    lambda_handler(load_event("offline-http-api-v2-post"), offline)  # requestId: a placeholder too
    lambda_handler(load_event("offline-http-api-v2-post"), offline)

    ids = [line["request_id"] for line in log_lines(capsys.readouterr().out) if line["message"] == "invocation"]
    assert ids[0] == rest["requestContext"]["requestId"]
    assert len(set(ids)) == 3
    assert not any(request_id.startswith(("offlineContext_", "1234567890")) for request_id in ids)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        pytest.param(make_v1_event(), (EventSource.REST_V1, False), id="rest"),
        pytest.param(make_v1_event(multi_value=True), (EventSource.REST_V1, True), id="rest-multi-value"),
        pytest.param(make_alb_event(), (EventSource.ALB, False), id="alb"),
        pytest.param(make_alb_event(multi_value=True), (EventSource.ALB, True), id="alb-multi-value"),
        pytest.param(make_v2_event(), (EventSource.HTTP_V2, False), id="http-api"),
        pytest.param(make_function_url_event(), (EventSource.FUNCTION_URL, False), id="function-url"),
        pytest.param(load_event("warmup-plugin"), (EventSource.WARMUP, False), id="warmup"),
        pytest.param(load_event("sqs"), (EventSource.UNSUPPORTED, False), id="sqs"),
        pytest.param(
            {"httpMethod": "GET", "path": "/users", "multiValueHeaders": ["Host: x"]},
            (EventSource.UNSUPPORTED, False),
            id="multi-value-headers-not-an-object",
        ),
    ],
)
def test_classify_event_reads_the_source_and_the_header_shape_once(
    event: dict[str, Any], expected: tuple[EventSource, bool]
) -> None:
    assert classify_event(event) == expected


def test_compat_module_names_the_installed_serverless_wsgi_and_what_it_corrects() -> None:
    # A new serverless-wsgi means reading every correction again against its code.
    doc = compat_serverless_wsgi.__doc__ or ""
    assert f"serverless-wsgi {metadata.version('serverless-wsgi')} " in doc
    # Each correction is a bullet that opens with the upstream functions it corrects.
    bullets = re.findall(r"^- ((?:`\w+`(?:, )?)+):", doc, re.MULTILINE)
    named = {name for bullet in bullets for name in re.findall(r"`(\w+)`", bullet)}
    assert len(bullets) >= 10
    assert all(callable(getattr(serverless_wsgi, name, None)) for name in named), named
    assert {"handle_request", "handle_payload_v1", "handle_payload_v2", "get_script_name", "generate_response"} <= named


# Issue 20's bar: a warm GET runs the code of at most 5 project modules, these.
WARM_GET_MODULES: frozenset[str] = frozenset(
    {"adapter.py", "compat_serverless_wsgi.py", "logs.py", "web/users.py", "storage/queries.py"}
)


@pytest.mark.parametrize(
    "event_name",
    [path.stem for path in sorted(SAMPLE_EVENTS_DIR.glob("*.json"))] + [f"aws/{name}" for name in aws_sample_names()],
)
@pytest.mark.parametrize(
    "headers", [{}, {"Accept-Encoding": "gzip"}, {"If-None-Match": "*"}], ids=["plain", "gzip", "304"]
)
def test_handler_warm_get_runs_five_project_modules(
    event_name: str, headers: dict[str, str], lambda_handler: LambdaHandler, context: FakeContext
) -> None:
    # Settings are read at cold start, types are declarations, JSON errors are for errors, gzip
    # only for bodies worth compressing, and a fixed database has nothing to do per request:
    # a warm GET of AWS's own sample events calls into none of them.
    event = load_event(event_name)
    for source in ("headers", "multiValueHeaders"):
        if isinstance(event.get(source), dict):
            for name, value in headers.items():
                event[source][name] = [value] if source == "multiValueHeaders" else value
    for _ in range(2):
        lambda_handler(event, context)
    package = Path(compat_serverless_wsgi.__file__).parent
    called: set[str] = set()

    def profile(frame: FrameType, kind: str, _: object) -> None:
        if kind == "call":
            called.add(frame.f_code.co_filename)

    sys.setprofile(profile)
    try:
        response = lambda_handler(event, context)
    finally:
        sys.setprofile(None)

    assert response["statusCode"] == (304 if "If-None-Match" in headers else 200)
    modules = {Path(name).relative_to(package).as_posix() for name in called if Path(name).is_relative_to(package)}
    assert modules == WARM_GET_MODULES


@pytest.mark.parametrize("module", [adapter, compat_serverless_wsgi], ids=["core", "compat"])
def test_adapter_imports_neither_storage_nor_sqlalchemy(module: ModuleType) -> None:
    # The log line reads the pool through `app.extensions["database"]` by duck typing.
    tree = ast.parse(Path(str(module.__file__)).read_text(encoding="utf-8"))
    imported = {node.module or "" for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {alias.name for node in ast.walk(tree) if isinstance(node, ast.Import) for alias in node.names}
    assert not {name for name in imported if name.split(".")[0] == "sqlalchemy" or name.startswith("app.storage")}
