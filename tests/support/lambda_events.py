"""Lambda event builders: keyword-only, small defaults, one `make_<shape>_event` per shape.

Builders default to Host `example.com`: serverless-wsgi treats hosts containing
"amazonaws.com" specially (it prefixes the stage), which dedicated tests cover. Captured
events are loaded by tests/support/payloads.py.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import pytest

__all__ = [
    "HTTP_EVENT_BUILDERS",
    "Event",
    "make_alb_event",
    "make_function_url_event",
    "make_v1_event",
    "make_v2_event",
    "response_headers",
]

Event = dict[str, Any]


def make_v1_event(
    *,
    method: str = "GET",
    path: str = "/users",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: str | None = None,
    multi_value: bool = False,
    stage: str = "dev",
    host: str = "example.com",
) -> Event:
    """An API Gateway REST API proxy event (payload 1.0)."""
    all_headers = {"Host": host, "Accept": "*/*", "User-Agent": "pytest", **(headers or {})}
    event: Event = {
        "resource": "/{proxy+}",
        "path": path,
        "httpMethod": method,
        "headers": all_headers,
        "queryStringParameters": query,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/{proxy+}",
            "httpMethod": method,
            "path": f"/{stage}{path}",
            "stage": stage,
            "requestId": "rest-request-id",
            "identity": {"sourceIp": "203.0.113.10", "userAgent": "pytest"},
        },
        "body": body,
        "isBase64Encoded": False,
    }
    if multi_value:
        event["multiValueHeaders"] = {name: [value] for name, value in all_headers.items()}
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in query.items()} if query else None
    return event


def make_v2_event(
    *,
    method: str = "GET",
    path: str = "/users",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    body: str | None = None,
    stage: str = "$default",
    host: str = "example.com",
) -> Event:
    """An API Gateway HTTP API event (payload 2.0). `path` is the raw path, stage prefix included."""
    event: Event = {
        "version": "2.0",
        "routeKey": "$default",
        "rawPath": path,
        "rawQueryString": urlencode(query or {}),
        "headers": {"host": host, "accept": "*/*", "user-agent": "pytest", **(headers or {})},
        "requestContext": {
            "accountId": "123456789012",
            "apiId": "api-id",
            "domainName": host,
            "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "203.0.113.10"},
            "requestId": "http-request-id",
            "routeKey": "$default",
            "stage": stage,
        },
        "isBase64Encoded": False,
    }
    if query:
        event["queryStringParameters"] = query
    if body is not None:
        event["body"] = body
    return event


def make_function_url_event(
    *,
    method: str = "GET",
    path: str = "/users",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
) -> Event:
    """A Lambda function URL event: payload 2.0 on a *.lambda-url.<region>.on.aws host."""
    host = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
    return make_v2_event(method=method, path=path, headers=headers, query=query, host=host)


def make_alb_event(
    *,
    method: str = "GET",
    path: str = "/users",
    headers: dict[str, str] | None = None,
    query: dict[str, str] | None = None,
    multi_value: bool = False,
) -> Event:
    """An ALB target event: a v1-like event with `requestContext.elb` and no `version`."""
    all_headers = {"host": "example.com", "accept": "*/*", "user-agent": "pytest", **(headers or {})}
    event: Event = {
        "requestContext": {
            "elb": {"targetGroupArn": "arn:aws:elasticloadbalancing:us-east-1:123456789012:targetgroup/t/1"}
        },
        "httpMethod": method,
        "path": path,
        "body": "",
        "isBase64Encoded": False,
    }
    if multi_value:
        event["multiValueHeaders"] = {name: [value] for name, value in all_headers.items()}
        event["multiValueQueryStringParameters"] = {k: [v] for k, v in (query or {}).items()}
    else:
        event["headers"] = all_headers
        event["queryStringParameters"] = query or {}
    return event


def response_headers(response: dict[str, Any]) -> dict[str, str]:
    """Headers of a proxy response, lower-cased, whichever of `headers`/`multiValueHeaders` it used."""
    if "multiValueHeaders" in response:
        return {name.lower(): ", ".join(values) for name, values in response["multiValueHeaders"].items()}
    return {name.lower(): value for name, value in response["headers"].items()}


# Every HTTP event shape the handler serves, for pytest.mark.parametrize.
HTTP_EVENT_BUILDERS = [
    pytest.param(make_v1_event, id="apigw-v1"),
    pytest.param(lambda **kw: make_v1_event(multi_value=True, **kw), id="apigw-v1-multi-value"),
    pytest.param(make_v2_event, id="apigw-v2"),
    pytest.param(make_alb_event, id="alb"),
    pytest.param(lambda **kw: make_alb_event(multi_value=True, **kw), id="alb-multi-value"),
    pytest.param(make_function_url_event, id="function-url"),
]
