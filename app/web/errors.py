"""JSON error responses: `{"error": <code>, "message": <text>}` with the right status.

Registered on the app, not the blueprint, so routing 404s and 405s are covered too.
Nothing from an exception (traceback, SQL, file path) reaches a response; it is logged.
`error_body` is the one place the error JSON is written: the adapter uses it too, for the
answers it gives without the app.
"""

from __future__ import annotations

import json
import logging

from flask import Flask, Response
from sqlalchemy import exc as sa_exc
from werkzeug.exceptions import HTTPException

from app.logs import LOGGER_NAME
from app.storage import DatabaseUnavailableError

__all__ = [
    "JSON_MIMETYPE",
    "RETRY_AFTER_SECONDS",
    "ApiError",
    "error_body",
    "error_response",
    "register_error_handlers",
]

JSON_MIMETYPE: str = "application/json"
# Pool exhaustion and a dropped database are usually brief: invite one quick retry.
RETRY_AFTER_SECONDS: int = 1
_UNAVAILABLE_MESSAGE: str = "The database is unavailable. Retry shortly."

_logger = logging.getLogger(f"{LOGGER_NAME}.errors")


class ApiError(Exception):
    """Raised by a view that cannot answer as asked; sent as the JSON error `error`/`message` with `status`."""

    def __init__(self, status: int, error: str, message: str, *, vary: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.message = message
        # The request headers the answer depends on (a 406 on Accept): a cache must key on them.
        self.vary = vary


def error_body(error: str, message: str) -> str:
    """The JSON text of an error."""
    return json.dumps({"error": error, "message": message}, separators=(",", ":"))


def error_response(status: int, error: str, message: str) -> Response:
    """A JSON error response with `status`."""
    return Response(error_body(error, message), status=status, mimetype=JSON_MIMETYPE)


def _http_error(exc: HTTPException) -> Response:
    status = exc.code or 500
    response = error_response(status, (exc.name or "error").lower().replace(" ", "_"), exc.description or "")
    for name, value in exc.get_headers():
        if name.lower() != "content-type":  # keeps Allow on 405, WWW-Authenticate on 401, ...
            response.headers[name] = value
    return response


def _api_error(exc: ApiError) -> Response:
    if exc.status >= 500:
        _logger.error(exc.error, extra={"fields": {"detail": exc.message}})
    response = error_response(exc.status, exc.error, exc.message)
    if exc.vary is not None:
        response.headers["Vary"] = exc.vary
    return response


def _unavailable(retry_after_seconds: int) -> Response:
    response = error_response(503, "database_unavailable", _UNAVAILABLE_MESSAGE)
    response.headers["Retry-After"] = str(retry_after_seconds)
    return response


def _database_unavailable(exc: Exception) -> Response:
    _logger.error("database unavailable", exc_info=exc)
    return _unavailable(RETRY_AFTER_SECONDS)


def _not_loaded(exc: DatabaseUnavailableError) -> Response:
    # Logged where the download failed; this is every request meanwhile.
    return _unavailable(exc.retry_after_seconds)


def _database_error(exc: sa_exc.DBAPIError) -> Response:
    # A plain DatabaseError (no more specific subclass) is SQLite's "file is not a database"
    # or "disk image is malformed": the file is unusable, not the query wrong.
    if exc.connection_invalidated or type(exc) is sa_exc.DatabaseError:
        return _database_unavailable(exc)
    return _unhandled(exc)


def _unhandled(exc: Exception) -> Response:
    _logger.error("unhandled exception", exc_info=exc)
    return error_response(500, "internal_server_error", "The server hit an unexpected error.")


def register_error_handlers(app: Flask) -> None:
    """Answer every error raised while serving a request with JSON."""
    app.register_error_handler(HTTPException, _http_error)
    app.register_error_handler(ApiError, _api_error)
    app.register_error_handler(DatabaseUnavailableError, _not_loaded)
    # Can't connect, connection lost, pool exhausted: the database is unavailable, not the code broken.
    app.register_error_handler(sa_exc.OperationalError, _database_unavailable)
    app.register_error_handler(sa_exc.InterfaceError, _database_unavailable)
    app.register_error_handler(sa_exc.TimeoutError, _database_unavailable)
    app.register_error_handler(sa_exc.DBAPIError, _database_error)
    app.register_error_handler(Exception, _unhandled)
