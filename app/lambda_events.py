"""Recognise the Lambda events this function serves, and answer the ones it does not.

serverless-wsgi 3.1.0 assumes every event is an HTTP event: a bare `{}`, an SQS batch or
an S3 notification dies in it with a KeyError. We classify first and only hand it the
shapes it handles: API Gateway REST (payload 1.0), HTTP API (2.0), ALB and function URLs.
"""

from __future__ import annotations

import enum
import json
from typing import Any

from app.types import LambdaResponse

__all__ = [
    "EventSource",
    "classify_event",
    "proxy_error_response",
    "request_line",
    "unsupported_event_response",
    "with_headers",
]

# What serverless-plugin-warmup and EventBridge schedules send to keep containers warm.
WARMUP_SOURCES: frozenset[str] = frozenset({"serverless-plugin-warmup", "aws.events"})

UNSUPPORTED_EVENT_MESSAGE: str = (
    "This function serves HTTP events only: API Gateway REST (payload 1.0), API Gateway HTTP API "
    "(payload 2.0), Application Load Balancer and Lambda function URL events."
)


class EventSource(enum.Enum):
    """Where an invocation came from, as far as this function cares."""

    REST_V1 = "apigw-rest"
    HTTP_V2 = "apigw-http"
    FUNCTION_URL = "function-url"
    ALB = "alb"
    WARMUP = "warmup"
    UNSUPPORTED = "unsupported"

    @property
    def is_http(self) -> bool:
        return self not in (EventSource.WARMUP, EventSource.UNSUPPORTED)


def classify_event(event: object) -> EventSource:
    """Classify by the fields serverless-wsgi reads, so that what we pass on it can serve."""
    if not isinstance(event, dict):
        return EventSource.UNSUPPORTED
    if event.get("source") in WARMUP_SOURCES:
        return EventSource.WARMUP
    request_context = event.get("requestContext")
    if event.get("version") == "2.0":
        return _classify_v2(event, request_context)
    if isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str) and _has_v1_headers(event):
        if not isinstance(request_context, dict | None):
            return EventSource.UNSUPPORTED
        return EventSource.ALB if request_context and "elb" in request_context else EventSource.REST_V1
    return EventSource.UNSUPPORTED


def _classify_v2(event: dict[str, Any], request_context: object) -> EventSource:
    if not (isinstance(request_context, dict) and isinstance(event.get("headers"), dict | None)):
        return EventSource.UNSUPPORTED
    http = request_context.get("http")
    if not (isinstance(http, dict) and isinstance(http.get("method"), str) and isinstance(event.get("rawPath"), str)):
        return EventSource.UNSUPPORTED
    if ".lambda-url." in str(request_context.get("domainName", "")):
        return EventSource.FUNCTION_URL
    return EventSource.HTTP_V2


def _has_v1_headers(event: dict[str, Any]) -> bool:
    multi_value_headers = event.get("multiValueHeaders")
    if multi_value_headers:
        return isinstance(multi_value_headers, dict)
    # Null is fine (the console's test events send it); missing is filled in by with_headers.
    return isinstance(event.get("headers"), dict | None)


def with_headers(event: dict[str, Any]) -> dict[str, Any]:
    """`event`, or a copy with empty `headers` where it has none: serverless-wsgi reads
    event["headers"] unconditionally. API Gateway, ALB and function URLs always send them;
    hand-written test events often do not."""
    if "headers" in event or event.get("multiValueHeaders"):
        return event
    return {**event, "headers": {}}


def request_line(event: dict[str, Any], source: EventSource) -> tuple[str | None, str | None]:
    """(method, path) of an HTTP event, for logs; (None, None) for anything else."""
    if source in (EventSource.HTTP_V2, EventSource.FUNCTION_URL):
        return event["requestContext"]["http"]["method"], event["rawPath"]
    if source.is_http:
        return event["httpMethod"], event["path"]
    return None, None


def proxy_error_response(status: int, error: str, message: str) -> LambdaResponse:
    """A JSON error in the proxy response shape, for answers given without the Flask app."""
    return {
        "statusCode": status,
        "headers": {"Content-Type": "application/json"},
        "body": json.dumps({"error": error, "message": message}),
        "isBase64Encoded": False,
    }


def unsupported_event_response() -> LambdaResponse:
    """The answer to an event that is not one of ours: 400, naming what we do serve."""
    return proxy_error_response(400, "unsupported_event", UNSUPPORTED_EVENT_MESSAGE)
