"""CORS (Fetch standard, "CORS protocol"): which web pages may read the API from a browser.

Off unless CORS_ALLOW_ORIGINS is set; what each response carries is docs/http.md ("CORS").

Not flask-cors (6.0.5): importing it lengthens every cold start, and it would still need
patching: it sends no `Vary: Origin` for a single allowed origin or to a refused one (a shared
cache could then serve one origin's answer to another), and it leaves Flask's 200 on preflights.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial

from flask import Flask, Response, request

from app.config import CORS_ANY_ORIGIN

__all__ = ["ALLOWED_METHODS", "ALLOWED_REQUEST_HEADERS", "EXPOSED_HEADERS", "MAX_AGE_SECONDS", "register_cors"]

ALLOWED_METHODS: str = "GET, HEAD"
# What the API reads from a request besides the CORS-safelisted ones.
ALLOWED_REQUEST_HEADERS: str = "Accept, If-None-Match"
EXPOSED_HEADERS: str = "Link, Retry-After, ETag"
# Chromium caps a preflight's cache at 2 hours (Firefox at 24): asking for more gains nothing.
MAX_AGE_SECONDS: int = 7200
_PREFLIGHT_METHODS: frozenset[str] = frozenset({"GET", "HEAD"})


def register_cors(app: Flask, allowed_origins: frozenset[str]) -> None:
    """Answer OPTIONS with 204, and add the CORS headers for `allowed_origins` (empty: CORS off)."""
    # Flask answers OPTIONS itself (200, empty, with Allow); the answer has no content. Replacing
    # its answer, rather than an after-request hook, costs the other methods nothing.
    app.make_default_options_response = partial(_no_content_options, app.make_default_options_response)  # type: ignore[method-assign]
    if allowed_origins:
        app.after_request(_CorsHeaders(allowed_origins))


def _no_content_options(flask_options_response: Callable[[], Response]) -> Response:
    response = flask_options_response()
    response.status_code = 204
    response.set_data(b"")
    del response.headers["Content-Type"]
    return response


class _CorsHeaders:
    """The after-request hook that adds the CORS response headers."""

    def __init__(self, allowed_origins: frozenset[str]) -> None:
        self.any_origin = CORS_ANY_ORIGIN in allowed_origins
        self.allowed_origins = allowed_origins

    def __call__(self, response: Response) -> Response:
        # Whether the answer carries Access-Control-Allow-Origin depends on Origin, so a cache
        # must key on it, even for requests without one.
        response.vary.add("Origin")
        origin = request.headers.get("Origin")
        if origin is None or not (self.any_origin or origin in self.allowed_origins):
            return response
        headers = response.headers
        headers["Access-Control-Allow-Origin"] = CORS_ANY_ORIGIN if self.any_origin else origin
        if request.method == "OPTIONS":
            if request.headers.get("Access-Control-Request-Method") in _PREFLIGHT_METHODS:
                headers["Access-Control-Allow-Methods"] = ALLOWED_METHODS
                headers["Access-Control-Allow-Headers"] = ALLOWED_REQUEST_HEADERS
                headers["Access-Control-Max-Age"] = str(MAX_AGE_SECONDS)
        else:
            headers["Access-Control-Expose-Headers"] = EXPOSED_HEADERS
        return response
