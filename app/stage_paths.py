"""Fix the paths serverless-wsgi 3.1.0 derives from stages.

On any host containing "amazonaws.com" it sets SCRIPT_NAME to "/<stage>", which is right
for REST APIs only. HTTP APIs (payload 2.0) serve the `$default` stage at the root (so
"/$default" would leak into every URL the app builds) and keep a named stage in `rawPath`
(so routing would see "/dev/users" and answer 404); ALB hosts (*.elb.amazonaws.com) have
no stage at all and get "/". An empty path (serverless-offline's REST root) becomes "/".
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["StagePathMiddleware"]

DEFAULT_STAGE: str = "$default"
# SCRIPT_NAMEs serverless-wsgi derives that mean "served at the root": "/$default", and "/"
# for ALB events (their *.elb.amazonaws.com host looks like API Gateway's, with no stage).
_ROOT_SCRIPT_NAMES: frozenset[str] = frozenset({"/" + DEFAULT_STAGE, "/"})


class StagePathMiddleware:
    """WSGI middleware: serve `$default` (and ALB) at the root, strip a named stage from PATH_INFO."""

    def __init__(self, app: WSGIApplication) -> None:
        self.app = app

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("SCRIPT_NAME") in _ROOT_SCRIPT_NAMES:
            environ["SCRIPT_NAME"] = ""
        if not environ.get("PATH_INFO"):
            # serverless-offline sends path "" for a REST API's root, where API Gateway sends "/";
            # Werkzeug would answer "" with a redirect to an absolute https:// URL.
            environ["PATH_INFO"] = "/"
        event: Any = environ.get("serverless.event")
        if event is not None and event.get("version") == "2.0":
            _strip_named_stage(environ, event)
        return self.app(environ, start_response)


def _strip_named_stage(environ: WSGIEnvironment, event: dict[str, Any]) -> None:
    stage = event["requestContext"].get("stage")
    if not stage or stage == DEFAULT_STAGE:
        return
    if "amazonaws.com" not in environ.get("SERVER_NAME", ""):
        return  # custom domains route by base path mapping; the stage is not in the path
    prefix = "/" + stage
    path = environ.get("PATH_INFO", "")
    if path == prefix or path.startswith(prefix + "/"):
        environ["PATH_INFO"] = path[len(prefix) :] or "/"
