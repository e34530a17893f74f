"""Lambda event <-> WSGI: `make_handler(app)` returns the Lambda handler serving `app`.

Each event is classified once, at the edge, into an EventSource that everything downstream
reads: which events reach the app at all, the stage paths, the response size limit and the
log line. HTTP events are served through serverless-wsgi (app/compat_serverless_wsgi.py holds
what it gets wrong); the rest are answered here. serverless-wsgi 3.1.0 assumes every event is
an HTTP event (a bare `{}`, an SQS batch or an S3 notification dies in it with a KeyError), so
only the shapes it handles reach it: API Gateway REST (payload 1.0), HTTP API (2.0), ALB and
function URLs.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, NamedTuple

from werkzeug.http import HTTP_STATUS_CODES

from app.compat_serverless_wsgi import InvalidEventError, ServerlessWsgi
from app.config import SETTINGS_KEY
from app.logs import LOGGER_NAME, current_invocation, write_invocation_line
from app.types import (
    ALB_RESPONSE_LIMIT,
    DATABASE_KEY,
    LAMBDA_RESPONSE_LIMIT,
    RESPONSE_LIMIT_KEY,
    HasEngine,
    LambdaContext,
    LambdaResponse,
)
from app.web.errors import JSON_MIMETYPE, error_body

if TYPE_CHECKING:
    from flask import Flask

    from app.config import Settings

__all__ = ["Classified", "EventSource", "LambdaHandler", "classify_event", "log_request", "make_handler"]

LambdaHandler = Callable[[Any, LambdaContext | None], LambdaResponse]

# What serverless-plugin-warmup and EventBridge schedules send to keep containers warm.
WARMUP_SOURCES: frozenset[str] = frozenset({"serverless-plugin-warmup", "aws.events"})
UNSUPPORTED_EVENT_MESSAGE: str = (
    "This function serves HTTP events only: API Gateway REST (payload 1.0), API Gateway HTTP API "
    "(payload 2.0), Application Load Balancer and Lambda function URL events."
)
INVALID_EVENT_MESSAGE: str = "The HTTP event is malformed and cannot be served as a request."
# serverless-offline's Python runner gives every invocation this aws_request_id; its REST
# events carry a fresh requestContext.requestId, its HTTP API events "offlineContext_...".
OFFLINE_REQUEST_ID: str = "1234567890"
OFFLINE_PLACEHOLDER_PREFIX: str = "offlineContext_"

_logger = logging.getLogger(f"{LOGGER_NAME}.invocation")


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

    @property
    def payload_v2(self) -> bool:
        """Payload format 2.0 (HTTP API, function URL): `rawPath`, `rawQueryString`, `cookies`."""
        return self in (EventSource.HTTP_V2, EventSource.FUNCTION_URL)

    @property
    def rest_api(self) -> bool:
        """An API Gateway REST API: the stage is a path prefix the event's path leaves out."""
        return self is EventSource.REST_V1

    @property
    def maps_custom_domains(self) -> bool:
        """API Gateway (REST, HTTP API): custom domains with base path mappings can front it."""
        return self in (EventSource.REST_V1, EventSource.HTTP_V2)

    @property
    def response_limit(self) -> int:
        """The largest response JSON this source's invoker accepts."""
        return ALB_RESPONSE_LIMIT if self is EventSource.ALB else LAMBDA_RESPONSE_LIMIT


class Classified(NamedTuple):
    """What the edge reads off an event, once: its source, and how its headers came."""

    source: EventSource
    # Headers in `multiValueHeaders` (REST APIs, ALB target groups with multi-value headers on):
    # the response must carry its headers the same way.
    multi_value: bool


_UNSUPPORTED = Classified(EventSource.UNSUPPORTED, multi_value=False)
_WARMUP = Classified(EventSource.WARMUP, multi_value=False)


def classify_event(event: object) -> Classified:
    """Classify by the fields serverless-wsgi reads, so that what we pass on it can serve."""
    if not isinstance(event, dict):
        return _UNSUPPORTED
    sender = event.get("source")
    if isinstance(sender, str) and sender in WARMUP_SOURCES:
        return _WARMUP
    request_context = event.get("requestContext")
    # serverless-wsgi answers in `multiValueHeaders` whenever the event has any, whatever its version.
    multi_value_headers = event.get("multiValueHeaders")
    multi_value = bool(multi_value_headers)
    if event.get("version") == "2.0":
        return _classify_v2(event, request_context, multi_value)
    if not (isinstance(event.get("httpMethod"), str) and isinstance(event.get("path"), str)):
        return _UNSUPPORTED
    # The headers serverless-wsgi reads must be an object. Null is fine (an empty `Headers`; the
    # console's test events send it), and so is missing (app/compat_serverless_wsgi.py fills it in).
    headers = multi_value_headers if multi_value else event.get("headers")
    if not isinstance(headers, dict | None) or not isinstance(request_context, dict | None):
        return _UNSUPPORTED
    source = EventSource.ALB if request_context and "elb" in request_context else EventSource.REST_V1
    return Classified(source, multi_value)


def _classify_v2(event: dict[str, Any], request_context: object, multi_value: bool) -> Classified:
    if not (isinstance(request_context, dict) and isinstance(event.get("headers"), dict | None)):
        return _UNSUPPORTED
    http = request_context.get("http")
    if not (isinstance(http, dict) and isinstance(http.get("method"), str) and isinstance(event.get("rawPath"), str)):
        return _UNSUPPORTED
    if ".lambda-url." in str(request_context.get("domainName", "")):
        return Classified(EventSource.FUNCTION_URL, multi_value)
    return Classified(EventSource.HTTP_V2, multi_value)


def make_handler(app: Flask) -> LambdaHandler:
    """The Lambda handler serving `app`: one JSON log line per invocation, cold start flagged once."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    served = {
        source: ServerlessWsgi(
            app,
            source,
            base_path=settings.api_gateway_base_path,
            environ={RESPONSE_LIMIT_KEY: source.response_limit},
        )
        for source in EventSource
        if source.is_http
    }
    database: HasEngine = app.extensions[DATABASE_KEY]
    cold_start = True

    def handler(event: Any, context: LambdaContext | None) -> LambdaResponse:
        nonlocal cold_start
        started = time.perf_counter()
        current_invocation.request_id = _request_id(event, context)
        current_invocation.cold_start = cold_start
        cold_start = False
        source, multi_value = classify_event(event)
        try:
            response = _respond(served, source, multi_value, event, context)
        except InvalidEventError as exc:
            _logger.warning("invalid event", extra={"fields": {"detail": str(exc)[:200]}})
            response = _proxy_error(400, "invalid_event", INVALID_EVENT_MESSAGE, source, multi_value)
        except Exception as exc:
            # Errors inside the app are answered by its handlers; this is the adapter failing on
            # an event it accepted. Answer JSON rather than return a traceback to the caller.
            _logger.error("invocation failed", exc_info=exc)
            message = "The server hit an unexpected error."
            response = _proxy_error(500, "internal_server_error", message, source, multi_value)
        _log_invocation(database, source, event, response, started)
        return response

    return handler


def _request_id(event: Any, context: LambdaContext | None) -> str | None:
    request_id: str | None = getattr(context, "aws_request_id", None)
    if request_id != OFFLINE_REQUEST_ID:
        return request_id
    request_context = event.get("requestContext") if isinstance(event, dict) else None
    event_id = request_context.get("requestId") if isinstance(request_context, dict) else None
    if isinstance(event_id, str) and event_id and not event_id.startswith(OFFLINE_PLACEHOLDER_PREFIX):
        return event_id
    return str(uuid.uuid4())  # one per request all the same, so that its lines can be told apart


def _respond(
    served: dict[EventSource, ServerlessWsgi], source: EventSource, multi_value: bool, event: Any, context: Any
) -> LambdaResponse:
    if source is EventSource.WARMUP:
        return {}  # what serverless-wsgi answers too, without touching the app or the database
    if source is EventSource.UNSUPPORTED:
        keys = sorted(event)[:20] if isinstance(event, dict) else None
        _logger.error("unsupported event", extra={"fields": {"event_keys": keys}})
        return _proxy_error(400, "unsupported_event", UNSUPPORTED_EVENT_MESSAGE)
    return served[source].handle_request(event, context, multi_value=multi_value)


def _proxy_error(
    status: int, error: str, message: str, source: EventSource = EventSource.UNSUPPORTED, multi_value: bool = False
) -> LambdaResponse:
    """A JSON error in the proxy response shape of `source`, for answers given without the app.

    Like serverless-wsgi's own answers: headers in `multiValueHeaders` when the event came with
    them (an ALB target group with multi-value headers accepts nothing else), and ALB's
    `statusDescription`; otherwise ALB answers the client 502 instead of this JSON.
    """
    response: LambdaResponse = {"statusCode": status}
    if multi_value:
        response["multiValueHeaders"] = {"Content-Type": [JSON_MIMETYPE]}
    else:
        response["headers"] = {"Content-Type": JSON_MIMETYPE}
    if source is EventSource.ALB:
        response["statusDescription"] = f"{status} {HTTP_STATUS_CODES[status]}"
    response["body"] = error_body(error, message)
    response["isBase64Encoded"] = False
    return response


def _log_invocation(
    database: HasEngine, source: EventSource, event: Any, response: LambdaResponse, started: float
) -> None:
    if not _logger.isEnabledFor(logging.INFO):
        return
    if source.payload_v2:
        method, path = event["requestContext"]["http"]["method"], event["rawPath"]
    elif source.is_http:
        method, path = event["httpMethod"], event["path"]
    else:
        method = path = None
    log_request(database, source.value, method, path, response.get("statusCode"), started)


def log_request(
    database: HasEngine, source: str, method: str | None, path: str | None, status: int | None, started: float
) -> None:
    """Log the line that closes a request, begun at `perf_counter()` `started` (also app/local.py's)."""
    write_invocation_line(
        _logger,
        source=source,
        method=method,
        path=path,
        status=status,
        duration_ms=(time.perf_counter() - started) * 1000,
        pool=_pool_figures(database),
    )


def _pool_figures(database: HasEngine) -> tuple[int, int, int] | str | None:
    """A queue pool's (size, checked out, overflow), another pool's class name, or None without an engine."""
    engine = database.engine
    if engine is None:
        return None  # an S3 snapshot that has not loaded yet
    pool: Any = engine.pool
    try:
        # A queue pool counts overflow from -pool_size: only connections beyond the pool size matter.
        return (pool.size(), pool.checkedout(), max(pool.overflow(), 0))
    except (AttributeError, TypeError):  # no such counters (NullPool); SingletonThreadPool's size is an int
        return type(pool).__name__
