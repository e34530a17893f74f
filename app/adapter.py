"""Lambda event <-> WSGI: `make_handler(app)` returns the Lambda handler serving `app`.

Each event is classified once, at the edge, into an EventSource that everything downstream
reads: which events reach the app at all, the stage-path fixes, the response size limit
and the log line. HTTP events go through serverless-wsgi's `handle_request`; the rest are
answered here. serverless-wsgi 3.1.0 assumes every event is an HTTP event (a bare `{}`, an
SQS batch or an S3 notification dies in it with a KeyError), so only the shapes it handles
reach it: API Gateway REST (payload 1.0), HTTP API (2.0), ALB and function URLs.
"""

from __future__ import annotations

import enum
import logging
import time
import uuid
from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote

import serverless_wsgi
from flask import Flask
from sqlalchemy.pool import QueuePool
from werkzeug.http import HTTP_STATUS_CODES

from app.config import SETTINGS_KEY, Settings
from app.logs import LOGGER_NAME, current_invocation, write_invocation_line
from app.storage import DATABASE_KEY, Database
from app.types import ALB_RESPONSE_LIMIT, LAMBDA_RESPONSE_LIMIT, RESPONSE_LIMIT_KEY, LambdaContext, LambdaResponse
from app.web.errors import JSON_MIMETYPE, error_body

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["EventSource", "LambdaHandler", "classify_event", "log_request", "make_handler"]

LambdaHandler = Callable[[Any, LambdaContext | None], LambdaResponse]

# What serverless-plugin-warmup and EventBridge schedules send to keep containers warm.
WARMUP_SOURCES: frozenset[str] = frozenset({"serverless-plugin-warmup", "aws.events"})
UNSUPPORTED_EVENT_MESSAGE: str = (
    "This function serves HTTP events only: API Gateway REST (payload 1.0), API Gateway HTTP API "
    "(payload 2.0), Application Load Balancer and Lambda function URL events."
)
INVALID_EVENT_MESSAGE: str = "The HTTP event is malformed and cannot be served as a request."
DEFAULT_STAGE: str = "$default"
# serverless-offline's Python runner gives every invocation this aws_request_id; its REST
# events carry a fresh requestContext.requestId, its HTTP API events "offlineContext_...".
OFFLINE_REQUEST_ID: str = "1234567890"
OFFLINE_PLACEHOLDER_PREFIX: str = "offlineContext_"
# serverless-offline marks the REST events it makes; it serves them under "/<stage>" on a
# loopback host, where serverless-wsgi (which looks for "amazonaws.com") sets no stage prefix.
OFFLINE_ACCOUNT_ID: str = "offlineContext_accountId"
# SCRIPT_NAMEs serverless-wsgi derives that mean "served at the root": "/$default" (an HTTP
# API's default stage), and "/" for ALB events (their *.elb.amazonaws.com host looks like
# API Gateway's, with no stage).
_ROOT_SCRIPT_NAMES: frozenset[str] = frozenset({"/" + DEFAULT_STAGE, "/"})

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
    def response_limit(self) -> int:
        """The largest response JSON this source's invoker accepts."""
        return ALB_RESPONSE_LIMIT if self is EventSource.ALB else LAMBDA_RESPONSE_LIMIT


def classify_event(event: object) -> EventSource:
    """Classify by the fields serverless-wsgi reads, so that what we pass on it can serve."""
    if not isinstance(event, dict):
        return EventSource.UNSUPPORTED
    source = event.get("source")
    if isinstance(source, str) and source in WARMUP_SOURCES:
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
    # Null is fine (the console's test events send it); missing is filled in by _normalised.
    return isinstance(event.get("headers"), dict | None)


def _request_line(event: Any, source: EventSource) -> tuple[str | None, str | None]:
    """(method, path) of an HTTP event, for logs; (None, None) for anything else."""
    if source in (EventSource.HTTP_V2, EventSource.FUNCTION_URL):
        return event["requestContext"]["http"]["method"], event["rawPath"]
    if source.is_http:
        return event["httpMethod"], event["path"]
    return None, None


def _proxy_error(
    status: int, error: str, message: str, source: EventSource = EventSource.UNSUPPORTED, event: Any = None
) -> LambdaResponse:
    """A JSON error in the proxy response shape of `source`, for answers given without the app.

    Like serverless-wsgi's own answers: headers in `multiValueHeaders` when the event came with
    them (an ALB target group with multi-value headers accepts nothing else), and ALB's
    `statusDescription`; otherwise ALB answers the client 502 instead of this JSON.
    """
    response: LambdaResponse = {"statusCode": status}
    if isinstance(event, dict) and event.get("multiValueHeaders"):
        response["multiValueHeaders"] = {"Content-Type": [JSON_MIMETYPE]}
    else:
        response["headers"] = {"Content-Type": JSON_MIMETYPE}
    if source is EventSource.ALB:
        response["statusDescription"] = f"{status} {HTTP_STATUS_CODES[status]}"
    response["body"] = error_body(error, message)
    response["isBase64Encoded"] = False
    return response


class _InvalidEventError(Exception):
    """Raised when an HTTP event cannot be turned into a request: the caller's fault, answered 400."""


def _normalised(event: dict[str, Any], source: EventSource) -> dict[str, Any]:
    """`event` as serverless-wsgi can read it, or _InvalidEventError.

    Real traffic sends nulls serverless-wsgi trips on (a function URL with auth type NONE has
    `authorizer: null`; the console's test events `headers: null`): those become empty.
    Values of the wrong type are refused. Header values are not scanned here: serverless-wsgi
    puts every header it reads into a werkzeug `Headers`, which refuses a value holding a line
    break before the app is entered (answered 400 like the rest), and `classify_event` has
    checked the header objects' types. Every warm invocation pays for what is left: O(1).
    """
    changes: dict[str, Any] = {}
    if "headers" not in event and not event.get("multiValueHeaders"):
        changes["headers"] = {}  # hand-written test events often have none
    context = event.get("requestContext")
    if context is None and "requestContext" in event:
        changes["requestContext"] = context = {}
    if isinstance(context, dict):
        # Absent is as good as an object: only a null or another type needs a closer look.
        identity, authorizer = context.get("identity", _ABSENT), context.get("authorizer", _ABSENT)
        if type(identity) is not dict or type(authorizer) is not dict:
            fixed = _context_without_nulls(context)
            if fixed is not context:
                changes["requestContext"] = fixed
        if type(context.get("stage", "")) is not str:
            raise _InvalidEventError("requestContext.stage")
    body = event.get("body")
    if body is not None and type(body) is not str:
        raise _InvalidEventError("body")
    if type(event.get("isBase64Encoded", False)) is not bool:
        raise _InvalidEventError("isBase64Encoded")
    if source in (EventSource.HTTP_V2, EventSource.FUNCTION_URL):
        raw_query = event.get("rawQueryString")
        if raw_query is None and "rawQueryString" in event:
            changes["rawQueryString"] = ""
        elif raw_query is not None and type(raw_query) is not str:
            raise _InvalidEventError("rawQueryString")
        cookies = event.get("cookies")
        if cookies is None and "cookies" in event:
            changes["cookies"] = []
        elif cookies is not None and not (type(cookies) is list and _all_strings(cookies)):
            raise _InvalidEventError("cookies")
    return {**event, **changes} if changes else event


_ABSENT: dict[str, Any] = {}


def _context_without_nulls(context: dict[str, Any]) -> dict[str, Any]:
    """`context` with a null identity/authorizer made empty, or _InvalidEventError for other non-objects."""
    fixed: dict[str, Any] = {key: {} for key in ("identity", "authorizer") if key in context and context[key] is None}
    if any(not isinstance(context.get(key) or {}, dict) for key in ("identity", "authorizer")):
        raise _InvalidEventError("requestContext")
    return {**context, **fixed} if fixed else context


def _all_strings(items: Iterable[Any]) -> bool:
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def _complete(response: LambdaResponse) -> LambdaResponse:
    # serverless-wsgi leaves `body` and `isBase64Encoded` out when the body is empty (HEAD,
    # OPTIONS, 204); every AWS example of a proxy response carries both.
    if "body" not in response:
        response["body"] = ""
    if "isBase64Encoded" not in response:
        response["isBase64Encoded"] = False
    return response


class _SourceApp:
    """The app as one event source's requests see it: stage paths fixed, response limit set.

    serverless-wsgi 3.1.0 sets SCRIPT_NAME to "/<stage>" on any host containing
    "amazonaws.com", which is right for REST APIs only. HTTP APIs serve the `$default` stage
    at the root (so "/$default" would leak into every URL the app builds) and keep a named
    stage in `rawPath` (so routing would see "/dev/users" and answer 404); ALB hosts have no
    stage at all and get "/". An empty path (serverless-offline's REST root) becomes "/".
    """

    def __init__(self, app: WSGIApplication, source: EventSource, base_path: str | None) -> None:
        self.app = app
        self.base_path = base_path
        self.response_limit = source.response_limit
        self.strips_named_stage = source in (EventSource.HTTP_V2, EventSource.FUNCTION_URL)
        self.is_rest = source is EventSource.REST_V1
        # Only API Gateway maps custom domains (ALBs and function URLs have no base path mapping).
        self.custom_domain_source = source in (EventSource.REST_V1, EventSource.HTTP_V2)
        # Set once serverless-wsgi has built the environ and calls the app: an exception before
        # that is the event's fault (400), after it this project's (500).
        self.entered = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.entered = True
        environ[RESPONSE_LIMIT_KEY] = self.response_limit
        if self.base_path is not None:
            _apply_base_path(environ, self.base_path, custom_domain_source=self.custom_domain_source)
        if self.is_rest and not environ.get("SCRIPT_NAME"):
            _offline_stage_prefix(environ)
        if environ.get("SCRIPT_NAME") in _ROOT_SCRIPT_NAMES:
            environ["SCRIPT_NAME"] = ""
        if not environ.get("PATH_INFO"):
            # Werkzeug would answer "" with a redirect to an absolute https:// URL.
            environ["PATH_INFO"] = "/"
        if self.strips_named_stage:
            _strip_named_stage(environ)
        return self.app(environ, start_response)


def _apply_base_path(environ: WSGIEnvironment, base_path: str, *, custom_domain_source: bool) -> None:
    """SCRIPT_NAME and PATH_INFO as API_GATEWAY_BASE_PATH means them: the base path mapping of a
    custom domain, a whole leading path segment (or several) of requests to that domain only.

    serverless-wsgi 3.1.0 (handle_payload_v1/v2) sets SCRIPT_NAME to "/<base path>" on every
    event, replacing the REST stage, and strips the base path as a string prefix. So through
    the execute-api host, a function URL or an ALB every `next` link pointed under a base
    path that does not exist there, and "/apiusers" on the custom domain was served as
    "/users". Both are recomputed from the event's own path here, as serverless-wsgi computes
    them without a base path; the stage fixes in `_SourceApp` then apply as usual.
    """
    event = environ["serverless.event"]
    raw_path = event["rawPath"] if event.get("version") == "2.0" else event["path"]
    path = serverless_wsgi.strip_express_gateway_query_params(raw_path)
    host = environ.get("SERVER_NAME", "")
    prefix = "/" + base_path
    if custom_domain_source and not _is_default_host(host) and (path == prefix or path.startswith(prefix + "/")):
        script_name, path = prefix, path[len(prefix) :]
    else:
        script_name = serverless_wsgi.get_script_name({"Host": host}, event.get("requestContext") or {})
    # The same WSGI strings serverless-wsgi makes (setup_environ_items): UTF-8 bytes as latin-1.
    environ["SCRIPT_NAME"] = _wsgi_string(script_name)
    environ["PATH_INFO"] = _wsgi_string(unquote(path))


def _is_default_host(host: str) -> bool:
    """An API Gateway host of the API itself (public, or a private API's VPC endpoint), not a custom domain."""
    name = host.partition(":")[0].lower()
    return ".execute-api." in name and name.endswith((".amazonaws.com", ".amazonaws.com.cn"))


def _wsgi_string(text: str) -> str:
    return text.encode("utf-8").decode("latin1", "replace")


def _offline_stage_prefix(environ: WSGIEnvironment) -> None:
    context = environ["serverless.event"].get("requestContext") or {}
    stage = context.get("stage")
    if context.get("accountId") == OFFLINE_ACCOUNT_ID and stage:
        environ["SCRIPT_NAME"] = "/" + stage


def _strip_named_stage(environ: WSGIEnvironment) -> None:
    stage = environ["serverless.event"]["requestContext"].get("stage")
    if not stage or stage == DEFAULT_STAGE:
        return
    if "amazonaws.com" not in environ.get("SERVER_NAME", ""):
        return  # custom domains route by base path mapping; the stage is not in the path
    prefix = "/" + stage
    path = environ.get("PATH_INFO", "")
    if path == prefix or path.startswith(prefix + "/"):
        environ["PATH_INFO"] = path[len(prefix) :] or "/"


def make_handler(app: Flask) -> LambdaHandler:
    """The Lambda handler serving `app`: one JSON log line per invocation, cold start flagged once."""
    settings: Settings = app.extensions[SETTINGS_KEY]
    apps = {source: _SourceApp(app, source, settings.api_gateway_base_path) for source in EventSource if source.is_http}
    database: Database = app.extensions[DATABASE_KEY]
    cold_start = True

    def handler(event: Any, context: LambdaContext | None) -> LambdaResponse:
        nonlocal cold_start
        started = time.perf_counter()
        current_invocation.request_id = _request_id(event, context)
        current_invocation.cold_start = cold_start
        cold_start = False
        source = classify_event(event)
        try:
            response = _respond(apps, source, event, context)
        except _InvalidEventError as exc:
            _logger.warning("invalid event", extra={"fields": {"detail": str(exc)[:200]}})
            response = _proxy_error(400, "invalid_event", INVALID_EVENT_MESSAGE, source, event)
        except Exception as exc:
            # Errors inside the app are answered by its handlers; this is the adapter failing on
            # an event it accepted. Answer JSON rather than return a traceback to the caller.
            _logger.error("invocation failed", exc_info=exc)
            response = _proxy_error(500, "internal_server_error", "The server hit an unexpected error.", source, event)
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


def _respond(apps: dict[EventSource, _SourceApp], source: EventSource, event: Any, context: Any) -> LambdaResponse:
    if source is EventSource.WARMUP:
        return {}  # what serverless-wsgi answers too, without touching the app or the database
    if source is EventSource.UNSUPPORTED:
        keys = sorted(event)[:20] if isinstance(event, dict) else None
        _logger.error("unsupported event", extra={"fields": {"event_keys": keys}})
        return _proxy_error(400, "unsupported_event", UNSUPPORTED_EVENT_MESSAGE)
    source_app = apps[source]
    source_app.entered = False
    try:
        response: LambdaResponse = serverless_wsgi.handle_request(source_app, _normalised(event, source), context)
    except Exception as exc:
        if source_app.entered:
            raise
        # Decoding the body, the headers or the query string failed: the event is malformed.
        raise _InvalidEventError(f"{type(exc).__name__}: {exc}") from exc
    return _complete(response)


def _log_invocation(
    database: Database, source: EventSource, event: Any, response: LambdaResponse, started: float
) -> None:
    if not _logger.isEnabledFor(logging.INFO):
        return
    method, path = _request_line(event, source)
    log_request(database, source.value, method, path, response.get("statusCode"), started)


def log_request(
    database: Database, source: str, method: str | None, path: str | None, status: int | None, started: float
) -> None:
    """Log the line that closes a request, begun at `perf_counter()` `started` (also app/local.py's)."""
    engine = database.engine
    pool = None if engine is None else engine.pool  # None: an S3 snapshot that has not loaded yet
    figures: tuple[int, int, int] | str | None = None
    if isinstance(pool, QueuePool):
        # QueuePool counts overflow from -pool_size; only connections beyond the pool size matter.
        figures = (pool.size(), pool.checkedout(), max(pool.overflow(), 0))
    elif pool is not None:
        figures = type(pool).__name__
    write_invocation_line(
        _logger,
        source=source,
        method=method,
        path=path,
        status=status,
        duration_ms=(time.perf_counter() - started) * 1000,
        pool=figures,
    )
