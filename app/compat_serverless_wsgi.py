"""serverless-wsgi 3.1.0 (requirements.txt pins it), with what it gets wrong for this function corrected.

`ServerlessWsgi(app, source, ...)`, built once per event source, serves that source's HTTP
events through `serverless_wsgi.handle_request`; app/adapter.py calls its `handle_request`
and reads as if serverless-wsgi were right. What it corrects, by upstream function:

Before serverless-wsgi sees the event (`_normalised`):
- `handle_payload_v1`, `handle_payload_v2`: `Headers(event["headers"])` raises KeyError when
  `headers` is missing (hand-written test events): it becomes `{}`.
- `handle_payload_v1`, `handle_payload_v2`: `event.get("requestContext", {}).get("identity",
  {}).get(...)`, and the same for `authorizer` in payload 2.0, fail on a null `requestContext`,
  `identity` or `authorizer` (the console's test events; a function URL with auth type NONE
  sends `authorizer: null`): nulls become `{}`, other non-objects are refused.
- `handle_payload_v2`: `event.get("rawQueryString", "")` and `"; ".join(event.get("cookies",
  []))` take a null for a value (a QUERY_STRING of None fails in the app, the join raises
  TypeError): nulls become "" and [].
- `get_body_bytes`, `get_script_name`, `handle_payload_v2`: a `body`, `isBase64Encoded`,
  `requestContext.stage`, `rawQueryString` or `cookies` of the wrong type is used as is
  (a stage 5 serves under "/5"): refused.
- `handle_request`: an exception raised while it decodes the event (base64 body, a header
  with a line break refused by `Headers`, ...) is indistinguishable from one raised by the app
  or `generate_response`: `handle_request` here raises InvalidEventError for the former (the
  caller's fault, answered 400) and lets the latter through (this project's, answered 500).

In the WSGI environ serverless-wsgi builds (`_SourceApp`):
- `get_script_name`: SCRIPT_NAME is "/<stage>" on any host containing "amazonaws.com", right
  for REST APIs only. An HTTP API serves its `$default` stage at the root ("/$default" would
  be in every URL the app builds), ALB hosts (*.elb.amazonaws.com) have no stage and get "/":
  both become "". serverless-offline serves REST events under "/<stage>" on a loopback host,
  where it gets none: its events (marked by their account id) get "/<stage>".
- `handle_payload_v2`: PATH_INFO is `rawPath`, which holds an HTTP API's named stage on the
  execute-api host ("/dev/users" would be 404): the stage is taken off.
- `handle_payload_v1`: an empty `path` (serverless-offline's REST root) is an empty PATH_INFO,
  which Werkzeug answers with a redirect to an absolute https:// URL: it becomes "/".
- `handle_payload_v1`, `handle_payload_v2`: API_GATEWAY_BASE_PATH replaces SCRIPT_NAME on every
  event (the execute-api host, function URLs, ALB too) and is stripped from the path as a
  string prefix ("/apiusers" served as "/users"): `_apply_base_path` recomputes both from the
  event's path, the base path applied on API Gateway custom domains only, as whole segments.
- `handle_payload_v1`, `handle_payload_v2`: the environ has no room for a caller's items:
  `environ` given at construction (the response limit) is added to it.

After (`_complete`):
- `generate_response`: `body` and `isBase64Encoded` are left out when the body is empty (HEAD,
  OPTIONS, 204); every AWS example of a proxy response carries both.

serverless-wsgi reads API_GATEWAY_BASE_PATH and STRIP_STAGE_PATH from os.environ on every
request. This module is given the base path read at cold start (app/config.py), the same value
on Lambda, and reads STRIP_STAGE_PATH through serverless-wsgi's own `get_script_name`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote

import serverless_wsgi

from app.types import LambdaResponse

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["InvalidEventError", "ServerlessWsgi", "SourceTraits"]

DEFAULT_STAGE: str = "$default"
# serverless-offline marks the REST events it makes; it serves them under "/<stage>" on a
# loopback host, where serverless-wsgi (which looks for "amazonaws.com") sets no stage prefix.
OFFLINE_ACCOUNT_ID: str = "offlineContext_accountId"
# SCRIPT_NAMEs serverless-wsgi derives that mean "served at the root": "/$default" (an HTTP
# API's default stage), and "/" for ALB events (their *.elb.amazonaws.com host looks like
# API Gateway's, with no stage).
_ROOT_SCRIPT_NAMES: frozenset[str] = frozenset({"/" + DEFAULT_STAGE, "/"})


class InvalidEventError(Exception):
    """Raised when an HTTP event cannot be turned into a request: the caller's fault, answered 400."""


class SourceTraits(Protocol):
    """What the corrections need to know of an event source (app/adapter.py's EventSource)."""

    @property
    def payload_v2(self) -> bool:
        """Payload format 2.0 (HTTP API, function URL): `rawPath`, `rawQueryString`, `cookies`."""
        ...

    @property
    def rest_api(self) -> bool:
        """An API Gateway REST API: the stage is a path prefix the event's path leaves out."""
        ...

    @property
    def maps_custom_domains(self) -> bool:
        """API Gateway (REST, HTTP API): custom domains with base path mappings can front it."""
        ...


class ServerlessWsgi:
    """serverless-wsgi's `handle_request` for one event source's events, corrected (see the module)."""

    def __init__(
        self, app: WSGIApplication, source: SourceTraits, *, base_path: str | None, environ: Mapping[str, object]
    ) -> None:
        self._payload_v2 = source.payload_v2
        self._source_app = _SourceApp(app, source, base_path, environ)

    def handle_request(self, event: dict[str, Any], context: object, *, multi_value: bool) -> LambdaResponse:
        """The proxy response to `event`, or InvalidEventError if it cannot be served as a request.

        `multi_value`: the headers came in `multiValueHeaders` (answered the same way).
        """
        source_app = self._source_app
        normalised = _normalised(event, payload_v2=self._payload_v2, multi_value=multi_value)
        source_app.entered = False
        try:
            response: LambdaResponse = serverless_wsgi.handle_request(source_app, normalised, context)
        except Exception as exc:
            if source_app.entered:
                raise
            # Decoding the body, the headers or the query string failed: the event is malformed.
            raise InvalidEventError(f"{type(exc).__name__}: {exc}") from exc
        return _complete(response)


def _normalised(event: dict[str, Any], *, payload_v2: bool, multi_value: bool) -> dict[str, Any]:
    """`event` as serverless-wsgi can read it, or InvalidEventError.

    Header values are not scanned here: serverless-wsgi puts every header it reads into a
    werkzeug `Headers`, which refuses a value holding a line break before the app is entered
    (answered 400 like the rest), and app/adapter.py's `classify_event` has checked the header
    objects' types. Every warm invocation pays for what is left: O(1).
    """
    changes: dict[str, Any] = {}
    if "headers" not in event and not multi_value:
        changes["headers"] = {}
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
            raise InvalidEventError("requestContext.stage")
    body = event.get("body")
    if body is not None and type(body) is not str:
        raise InvalidEventError("body")
    if type(event.get("isBase64Encoded", False)) is not bool:
        raise InvalidEventError("isBase64Encoded")
    if payload_v2:
        raw_query = event.get("rawQueryString")
        if raw_query is None and "rawQueryString" in event:
            changes["rawQueryString"] = ""
        elif raw_query is not None and type(raw_query) is not str:
            raise InvalidEventError("rawQueryString")
        cookies = event.get("cookies")
        if cookies is None and "cookies" in event:
            changes["cookies"] = []
        elif cookies is not None and not (type(cookies) is list and _all_strings(cookies)):
            raise InvalidEventError("cookies")
    return {**event, **changes} if changes else event


_ABSENT: dict[str, Any] = {}


def _context_without_nulls(context: dict[str, Any]) -> dict[str, Any]:
    """`context` with a null identity/authorizer made empty, or InvalidEventError for other non-objects."""
    fixed: dict[str, Any] = {key: {} for key in ("identity", "authorizer") if key in context and context[key] is None}
    if any(not isinstance(context.get(key) or {}, dict) for key in ("identity", "authorizer")):
        raise InvalidEventError("requestContext")
    return {**context, **fixed} if fixed else context


def _all_strings(items: Iterable[Any]) -> bool:
    try:
        "".join(items)
    except TypeError:
        return False
    return True


def _complete(response: LambdaResponse) -> LambdaResponse:
    if "body" not in response:
        response["body"] = ""
    if "isBase64Encoded" not in response:
        response["isBase64Encoded"] = False
    return response


class _SourceApp:
    """The app as one event source's requests see it: SCRIPT_NAME and PATH_INFO corrected, `environ` added."""

    def __init__(
        self, app: WSGIApplication, source: SourceTraits, base_path: str | None, environ: Mapping[str, object]
    ) -> None:
        self.app = app
        self.environ = dict(environ)
        self.payload_v2 = source.payload_v2
        self.rest_api = source.rest_api
        # Only API Gateway maps custom domains (ALBs and function URLs have no base path mapping).
        self.maps_custom_domains = source.maps_custom_domains
        self.base_path = base_path
        # Set once serverless-wsgi has built the environ and calls the app: an exception before
        # that is the event's fault (400), after it this project's (500).
        self.entered = False

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        self.entered = True
        environ.update(self.environ)
        if self.base_path is not None:
            _apply_base_path(
                environ, self.base_path, payload_v2=self.payload_v2, maps_custom_domains=self.maps_custom_domains
            )
        if self.rest_api and not environ.get("SCRIPT_NAME"):
            _offline_stage_prefix(environ)
        if environ.get("SCRIPT_NAME") in _ROOT_SCRIPT_NAMES:
            environ["SCRIPT_NAME"] = ""
        if not environ.get("PATH_INFO"):
            environ["PATH_INFO"] = "/"
        if self.payload_v2:
            _strip_named_stage(environ)
        return self.app(environ, start_response)


def _apply_base_path(environ: WSGIEnvironment, base_path: str, *, payload_v2: bool, maps_custom_domains: bool) -> None:
    """SCRIPT_NAME and PATH_INFO as API_GATEWAY_BASE_PATH means them: the base path mapping of a
    custom domain, a whole leading path segment (or several) of requests to that domain only.

    Recomputed from the event's own path, as serverless-wsgi computes them without a base path
    (so whether it saw API_GATEWAY_BASE_PATH does not matter); the stage fixes in `_SourceApp`
    then apply as usual.
    """
    event = environ["serverless.event"]
    raw_path = event["rawPath"] if payload_v2 else event["path"]
    path = serverless_wsgi.strip_express_gateway_query_params(raw_path)
    host = environ.get("SERVER_NAME", "")
    prefix = "/" + base_path
    rest = _after_segments(path, prefix) if maps_custom_domains and not _is_default_host(host) else None
    if rest is not None:
        script_name, path = prefix, rest
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
    rest = _after_segments(environ.get("PATH_INFO", ""), "/" + stage)
    if rest is not None:
        environ["PATH_INFO"] = rest or "/"


def _after_segments(path: str, prefix: str) -> str | None:
    """What follows `prefix` in `path` when it is whole leading segments ("/api" of "/api/users",
    not of "/apiusers"); None otherwise."""
    if path == prefix or path.startswith(prefix + "/"):
        return path[len(prefix) :]
    return None
