"""The users blueprint: GET /users, paged by cursor, as text or JSON."""

from __future__ import annotations

from functools import partial
from typing import Any

from flask import Blueprint, Response, current_app, request, url_for
from sqlalchemy import Connection

from app.config import SETTINGS_KEY
from app.storage import DATABASE_KEY
from app.storage.queries import fetch_users_after, read_with_reconnect
from app.web.cursor import encode_cursor
from app.web.errors import ApiError
from app.web.pages import JSON, TEXT, NameFormat, Page, PageQuery, body_budget, collect_page, parse_page_query

__all__ = ["bp"]

bp = Blueprint("users", __name__)

# What `Accept` chooses between; on a tie (`*/*`) the first, the seed's text.
_OFFERED: dict[str, NameFormat] = {TEXT.mimetype: TEXT, JSON.mimetype: JSON}
_ANYTHING: frozenset[str] = frozenset({"", "*/*"})
_NOT_ACCEPTABLE_MESSAGE: str = "GET /users sends text/plain or application/json; the Accept header allows neither."


@bp.get("/users")
def list_users() -> Response:
    """Names in key order: all that fit in one response, or one page of them with a `next` link."""
    query = parse_page_query(request.args, current_app.extensions[SETTINGS_KEY].max_page_limit)
    name_format = query.format or _negotiate()
    budget = body_budget(request.environ)

    def read_page(conn: Connection) -> Page:
        fetch = partial(fetch_users_after, conn)
        return collect_page(fetch, after=query.after, limit=query.limit, name_format=name_format, budget=budget)

    page = read_with_reconnect(current_app.extensions[DATABASE_KEY].engine, read_page)
    next_cursor = None if page.next_after is None else encode_cursor(page.next_after)
    response = Response(name_format.body(page.pieces, next_cursor), mimetype=name_format.mimetype)
    response.headers["Vary"] = "Accept"
    if next_cursor is not None:
        response.headers["Link"] = f'<{_next_url(query, next_cursor)}>; rel="next"'
    return response


def _negotiate() -> NameFormat:
    # Most clients send no Accept or "*/*": answer those without parsing (they mean text).
    if request.environ.get("HTTP_ACCEPT", "") in _ANYTHING:
        return TEXT
    accept = request.accept_mimetypes
    if not accept:  # nothing werkzeug could parse: treated as no Accept header
        return TEXT
    best = accept.best_match(_OFFERED)
    if best is None:
        raise ApiError(406, "not_acceptable", _NOT_ACCEPTABLE_MESSAGE)
    return _OFFERED[best]


def _next_url(query: PageQuery, next_cursor: str) -> str:
    """This request's URL, from the root the client used (stage, base path), at the next page."""
    parameters: dict[str, Any] = {"after": next_cursor}
    if query.limit is not None:
        parameters["limit"] = query.limit
    if query.format is not None:
        parameters["format"] = query.format.name
    return url_for("users.list_users", **parameters)
