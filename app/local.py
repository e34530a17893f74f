"""The development server behind `make run` (handler.py's `__main__`); Lambda never imports it.

Flask's server, with the debugger and reloader, writing the same per-request line as the
Lambda handler (source "local") in place of Werkzeug's own access log.
"""

from __future__ import annotations

import argparse
import time
import uuid
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from flask import Flask
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wsgi import ClosingIterator

from app.adapter import log_request
from app.logs import current_invocation
from app.storage import DATABASE_KEY, Database

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

__all__ = ["DEFAULT_PORT", "logged", "serve"]

DEFAULT_PORT: int = 5000


class _NoAccessLog(WSGIRequestHandler):
    """Werkzeug's request handler without its access line: `logged` writes one per request."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


def logged(app: Flask) -> WSGIApplication:
    """`app.wsgi_app`, logging one invocation line per request once its response is sent."""
    wsgi_app = app.wsgi_app
    database: Database = app.extensions[DATABASE_KEY]
    cold_start = True

    def logged_app(environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        nonlocal cold_start
        started = time.perf_counter()
        # The server runs a thread per request: with two at once, a line may carry the other's id.
        current_invocation.request_id, current_invocation.cold_start = str(uuid.uuid4()), cold_start
        cold_start = False
        status: list[int] = []

        def start(status_line: str, headers: list[tuple[str, str]], exc_info: Any = None) -> Any:
            status[:] = [int(status_line.split(" ", 1)[0])]
            return start_response(status_line, headers, exc_info)

        def log() -> None:
            method, path = environ.get("REQUEST_METHOD"), environ.get("PATH_INFO")
            log_request(database, "local", method, path, status[0] if status else None, started)

        try:
            body = wsgi_app(environ, start)
        except BaseException:
            status[:] = [500]  # the debugger answers it
            log()
            raise
        return ClosingIterator(body, log)

    return logged_app


def _port(raw: str) -> int:
    if not raw.isdigit() or not 1 <= int(raw) <= 65535:
        raise argparse.ArgumentTypeError(f"PORT must be a TCP port, 1-65535; got {raw!r}")
    return int(raw)


def serve(app: Flask, argv: Sequence[str] | None = None) -> None:
    """Serve `app` on http://127.0.0.1:PORT (`--port`, default 5000) until Ctrl-C."""
    parser = argparse.ArgumentParser(prog="handler.py", description="Serve the API locally (make run PORT=...).")
    parser.add_argument("--port", type=_port, default=DEFAULT_PORT, metavar="PORT")
    args = parser.parse_args(argv)
    app.wsgi_app = logged(app)  # type: ignore[method-assign, assignment]
    # debug: the debugger and reloader, for this local server only (tests check Lambda's app is not).
    app.run(host="127.0.0.1", port=args.port, debug=True, request_handler=_NoAccessLog)
