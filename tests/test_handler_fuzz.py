"""Property-based tests: any JSON value, and mangled events of every shape, thrown at `handler.handler`.

Whatever arrives, the handler answers: it never raises, returns a complete proxy response (or
`{}` to a warm-up ping), never a 5xx (nothing here is this project's fault), never a traceback,
SQL or file path, never a Link header other than one well-formed relative link, and leaves no
pooled connection checked out. Derandomized and bounded, so a run is repeatable and takes
seconds; FUZZ_EXAMPLES=5000 searches harder locally (`--hypothesis-show-statistics` counts them).
"""

from __future__ import annotations

import base64
import binascii
import copy
import os
import re
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from flask import Flask
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from sqlalchemy.pool import QueuePool

from app.adapter import LambdaHandler
from tests.support import ROOT
from tests.support.engines import engine_of
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import (
    Event,
    make_alb_event,
    make_function_url_event,
    make_v1_event,
    make_v2_event,
    response_headers,
)
from tests.support.payloads import aws_sample_names, load_event

FUZZ_EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ_SETTINGS = settings(
    derandomize=True,  # the same examples on every run: CI cannot flake on a lucky draw
    database=None,  # nor depend on examples saved by an earlier run
    max_examples=FUZZ_EXAMPLES,
    deadline=None,  # a cold start or a GC pause is not a failure
    # The handler and its app are built once per test and shared by its examples, as a warm container would.
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

# What serverless-plugin-warmup and EventBridge schedules send: answered with {} (serverless-wsgi's answer).
WARMUP_SOURCES = ("serverless-plugin-warmup", "aws.events")
# A response body must name none of these: they come from tracebacks, SQL and file paths.
LEAK_MARKERS = ("Traceback", 'File "', "sqlalchemy", "SELECT ", "sqlite", "site-packages", str(ROOT))
# One `next` link relative to the request's own root: "/" then no second "/", no spaces, quotes or angle brackets.
LINK_PATTERN = re.compile(r'<(/(?!/)[^<>"\s]*)>; rel="next"')


# --- strategies -------------------------------------------------------------------------

# Any code point, lone surrogates included: JSON can carry "\ud800" and json.loads returns it.
any_text = st.text(st.characters(codec=None, exclude_categories=()), max_size=12)

json_scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)  # what Lambda's JSON can carry
    | any_text
)

EVENT_KEYS = (
    "version",
    "httpMethod",
    "path",
    "rawPath",
    "rawQueryString",
    "resource",
    "headers",
    "multiValueHeaders",
    "queryStringParameters",
    "multiValueQueryStringParameters",
    "requestContext",
    "body",
    "isBase64Encoded",
    "cookies",
    "source",
    "routeKey",
    "stageVariables",
)

json_values = st.recursive(
    json_scalars,
    lambda children: st.lists(children, max_size=4) | st.dictionaries(any_text, children, max_size=4),
    max_leaves=10,
)

# Dicts with an event's keys, so arbitrary values reach the classifier's and the adapter's branches.
event_like = st.dictionaries(st.sampled_from(EVENT_KEYS) | any_text, json_values, max_size=8)

# Strings a client, a proxy or a misconfiguration can put where the adapter expects sane ones.
ODD_STRINGS = (
    "",
    "\ud800",
    "/users\ud800",
    "GET\ud800",
    "\n",
    "a\r\nSet-Cookie: x=1",
    "\x00",
    "%",
    "%zz",
    "%2e%2e/",
    "//evil.example",
    'x>; rel="prev", <https://evil.example/',
    "not base64!",
    "=",
    "Zoë",
    "users",
    "*",
    "true",
    "2.0",
)

HTTP_METHODS = ("GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE", "get")

BASE_EVENTS: tuple[tuple[str, Callable[[], Event]], ...] = (
    ("apigw-v1", make_v1_event),
    ("apigw-v1-multi-value", partial(make_v1_event, multi_value=True, query={"limit": "2"})),
    (
        "apigw-v1-stage-host",
        partial(make_v1_event, host="abc123.execute-api.us-east-1.amazonaws.com", query={"limit": "2"}),
    ),
    (
        "apigw-v1-post",
        partial(make_v1_event, method="POST", body='{"name": "x"}', headers={"Content-Type": "application/json"}),
    ),
    ("apigw-v2", partial(make_v2_event, query={"limit": "2"})),
    (
        "apigw-v2-stage",
        partial(make_v2_event, stage="dev", path="/dev/users", host="abc123.execute-api.us-east-1.amazonaws.com"),
    ),
    ("alb", partial(make_alb_event, query={"limit": "2"})),
    ("alb-multi-value", partial(make_alb_event, multi_value=True)),
    ("function-url", make_function_url_event),
    *(
        (name, partial(load_event, name))
        for name in ("rest-v1", "http-api-v2", "alb", "alb-multi-value", "function-url")
    ),
    *((f"aws/{name}", partial(load_event, f"aws/{name}")) for name in aws_sample_names()),
)


def _paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every key and index path inside `value`."""
    found: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found.extend(_paths(child, (*prefix, key)))
    return found


def _parent(event: Event, path: tuple[str | int, ...]) -> Any:
    node: Any = event
    for key in path[:-1]:
        node = node[key]
    return node


@st.composite
def mutated_events(draw: st.DrawFn) -> Event:
    """A sample or builder event of any shape, with one to four things changed, deleted, nulled or replaced."""
    _, build = draw(st.sampled_from(BASE_EVENTS))
    event = copy.deepcopy(build())  # builders may share their keyword arguments' dicts with the event
    for _ in range(draw(st.integers(min_value=1, max_value=4))):
        paths = _paths(event)
        operation = draw(st.sampled_from(("method", "delete", "null", "wrong-type", "odd-string", "add-key")))
        if operation == "method":
            # Other methods reach other code: HEAD and OPTIONS answers have no body.
            _set_method(event, draw(st.sampled_from(HTTP_METHODS) | st.sampled_from(ODD_STRINGS)))
        elif operation == "add-key" or not paths:
            containers = [path for path in paths if isinstance(_parent(event, (*path, "")), dict)]
            node = _parent(event, (*draw(st.sampled_from([(), *containers])), ""))
            node[draw(st.sampled_from(EVENT_KEYS) | any_text)] = copy.deepcopy(draw(json_values))
        else:
            path = draw(st.sampled_from(paths))
            parent = _parent(event, path)
            if operation == "delete":
                del parent[path[-1]]
            elif operation == "null":
                parent[path[-1]] = None
            elif operation == "wrong-type":
                parent[path[-1]] = copy.deepcopy(draw(json_values))
            else:
                parent[path[-1]] = draw(st.sampled_from(ODD_STRINGS) | any_text)
    return event


def _set_method(event: Event, method: str) -> None:
    request_context = event.get("requestContext")
    if isinstance(request_context, dict) and isinstance(request_context.get("http"), dict):
        request_context["http"]["method"] = method
    else:
        event["httpMethod"] = method


# --- invariants -------------------------------------------------------------------------


def _checked_out(app: Flask) -> int:
    pool = engine_of(app).pool
    assert isinstance(pool, QueuePool), f"the test app pools with QueuePool, not {type(pool).__name__}"
    return pool.checkedout()


def _is_warmup(event: Any) -> bool:
    return isinstance(event, dict) and isinstance(event.get("source"), str) and event["source"] in WARMUP_SOURCES


def assert_handled(handler: LambdaHandler, app: Flask, event: Any, context: FakeContext) -> None:
    """The handler's answer to `event` satisfies every invariant (the module docstring)."""
    response = handler(copy.deepcopy(event), context)

    assert _checked_out(app) == 0, "a pooled connection was left checked out"
    assert isinstance(response, dict), f"not a dict: {type(response).__name__}"
    if response == {} and _is_warmup(event):
        return
    assert {"statusCode", "body", "isBase64Encoded"} <= response.keys(), f"incomplete: keys {sorted(response)}"
    assert type(response["statusCode"]) is int, f"statusCode {response['statusCode']!r}"
    assert isinstance(response["body"], str), f"body {type(response['body']).__name__}"
    assert type(response["isBase64Encoded"]) is bool, f"isBase64Encoded {response['isBase64Encoded']!r}"
    assert isinstance(response.get("headers", response.get("multiValueHeaders")), dict), "no headers"
    body = _decoded_body(response)
    assert response["statusCode"] < 500, f"{response['statusCode']} for a client's event: {body[:300]}"
    leaks = [marker for marker in LEAK_MARKERS if marker in body]
    assert not leaks, f"body leaks {leaks}: {body[:300]}"
    link = response_headers(response).get("link")
    if link is not None:
        assert LINK_PATTERN.fullmatch(link), f"malformed Link header: {link!r}"


def _decoded_body(response: dict[str, Any]) -> str:
    if not response["isBase64Encoded"]:
        body: str = response["body"]
        return body
    try:
        return base64.b64decode(response["body"], validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        pytest.fail(f"isBase64Encoded but the body is not base64: {response['body'][:100]!r}")


# --- tests ------------------------------------------------------------------------------


@FUZZ_SETTINGS
@given(event=json_values | event_like)
# The shapes issue 11 reports, tried on every run whatever the generator draws.
@example(event={"source": ["x"]})
@example(event={"source": {}})
@example(event={"version": "2.0", "requestContext": None, "rawPath": "/users"})
def test_handler_fuzz_any_json_answered(
    event: Any, lambda_handler: LambdaHandler, app: Flask, context: FakeContext
) -> None:
    assert_handled(lambda_handler, app, event, context)


def _with(build: Callable[[], Event], *changes: tuple[tuple[str | int, ...], Any]) -> Event:
    event = copy.deepcopy(build())
    for path, value in changes:
        _parent(event, path)[path[-1]] = value
    return event


@FUZZ_SETTINGS
@given(event=mutated_events())
@example(event=_with(make_v1_event, (("path",), "/users\ud800")))
@example(event=_with(make_v1_event, (("httpMethod",), "GET\ud800")))
@example(event=_with(make_v2_event, (("isBase64Encoded",), True), (("body",), "not base64!")))
@example(event=_with(make_v2_event, (("body",), 42)))
@example(event=_with(make_v2_event, (("cookies",), "a=b")))
@example(event=_with(make_v2_event, (("rawQueryString",), 7)))
@example(event=_with(make_v1_event, (("requestContext",), None)))
@example(event=_with(make_v1_event, (("requestContext", "identity"), None)))
@example(event=_with(make_v1_event, (("requestContext", "authorizer"), None)))
# What the Lambda guide says a function URL with auth type NONE sends.
@example(event=_with(make_function_url_event, (("requestContext", "authorizer"), None)))
@example(event=_with(make_v1_event, (("headers", "Accept"), "text/plain\nX-Injected: 1")))
@example(event=_with(make_v1_event, (("httpMethod",), "HEAD")))
@example(event=_with(make_v2_event, (("requestContext", "http", "method"), "OPTIONS")))
@example(
    event=_with(
        partial(make_v1_event, host="abc123.execute-api.us-east-1.amazonaws.com", query={"limit": "2"}),
        (("requestContext", "stage"), 'x>; rel="prev", <https://evil.example/'),
    )
)
@example(
    event=_with(
        partial(make_v1_event, host="abc123.execute-api.us-east-1.amazonaws.com", query={"limit": "2"}),
        (("requestContext", "stage"), "/evil.example"),
    )
)
def test_handler_fuzz_mangled_events_answered(
    event: Event, lambda_handler: LambdaHandler, app: Flask, context: FakeContext
) -> None:
    assert_handled(lambda_handler, app, event, context)


@pytest.mark.parametrize(("name", "build"), [pytest.param(name, build, id=name) for name, build in BASE_EVENTS])
def test_handler_fuzz_base_events_pass_unchanged(
    name: str, build: Callable[[], Event], lambda_handler: LambdaHandler, app: Flask, context: FakeContext
) -> None:
    # The invariants hold for every event the mutations start from: a failure above is the mutation's.
    assert_handled(lambda_handler, app, build(), context)


@pytest.mark.parametrize("source", WARMUP_SOURCES)
def test_handler_fuzz_warmup_ping_answered_empty(
    source: str, lambda_handler: LambdaHandler, app: Flask, context: FakeContext
) -> None:
    assert lambda_handler({"source": source}, context) == {}
    assert_handled(lambda_handler, app, {"source": source}, context)
