"""The users blueprint: GET /users, paged by cursor, as text or JSON."""

from __future__ import annotations

from functools import lru_cache, partial
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import Connection

from app.config import SETTINGS_KEY
from app.storage import DATABASE_KEY
from app.storage.queries import answer_deadline, fetch_users_after, read_with_reconnect, reads_cross_a_network
from app.web.conditional import body_etag, is_not_modified, not_modified_response, query_etag
from app.web.cursor import encode_cursor
from app.web.encoding import ContentCoding, GzipMeter, encode_body, negotiate_coding, page_meter
from app.web.errors import ApiError
from app.web.negotiation import choose_media_type
from app.web.pages import JSON, TEXT, NameFormat, Page, PageQuery, body_budget, collect_page, parse_page_query

__all__ = ["bp"]

bp = Blueprint("users", __name__)

# What `Accept` chooses between; on a tie (`*/*`, equal q-values) the first, the seed's text.
_OFFERED: dict[str, NameFormat] = {TEXT.mimetype: TEXT, JSON.mimetype: JSON}
_OFFERED_TYPES: tuple[str, ...] = tuple(_OFFERED)
_ANYTHING: frozenset[str] = frozenset({"", "*/*"})
# Distinct Accept headers remembered; a client cannot grow it past this bound.
_ACCEPT_CACHE_SIZE: int = 256
# Responses differ by Accept (the format) and Accept-Encoding (gzip or not); CORS adds Origin.
_VARY: str = "Accept, Accept-Encoding"
_NOT_ACCEPTABLE_MESSAGE: str = "GET /users sends text/plain or application/json; the Accept header allows neither."


@bp.before_app_request
def _prepare_database() -> None:
    # Once per request, here at the edge: when the answer must be ready, from the Lambda context
    # serverless-wsgi puts in the environ; passed down to the database (an S3 snapshot's refresh)
    # and to the reads.
    g.deadline = answer_deadline(request.environ.get("serverless.context"))
    current_app.extensions[DATABASE_KEY].before_request(g.deadline)


@bp.get("/users")
def list_users() -> Response:
    """Names in key order: all that fit in one response, or one page of them with a `next` link."""
    query = parse_page_query(request.args, current_app.extensions[SETTINGS_KEY].max_page_limit)
    name_format = query.format or _negotiate()
    budget = body_budget(request.environ)
    coding = negotiate_coding(request.environ.get("HTTP_ACCEPT_ENCODING"))
    database = current_app.extensions[DATABASE_KEY]
    etag = _identity_etag(database.content_id(), query, name_format, budget, coding)
    if etag is not None and is_not_modified(etag):
        return not_modified_response(etag, _VARY)  # the database is not read
    deadline: float | None = g.deadline

    meter: GzipMeter | None = None

    def read_page(conn: Connection) -> Page:
        nonlocal meter
        fetch = partial(fetch_users_after, conn)
        meter = page_meter(coding, budget, name_format)  # afresh for each try: a reconnect reads again
        return collect_page(
            fetch,
            after=query.after,
            limit=query.limit,
            name_format=name_format,
            budget=budget,
            deadline=deadline,
            grow=reads_cross_a_network(conn),
            meter=meter,
        )

    page = read_with_reconnect(database.engine, read_page, repair=database.repair, deadline=deadline)
    next_cursor = None if page.next_after is None else encode_cursor(page.next_after)
    body, content_encoding = encode_body(page, name_format, next_cursor, meter)
    link = None if next_cursor is None else f'<{_next_url(query, next_cursor)}>; rel="next"'
    if etag is None or page.cut_by_deadline:
        etag = body_etag(body, name_format.mimetype, link, *([content_encoding] if content_encoding else []))
        if is_not_modified(etag):
            return not_modified_response(etag, _VARY)
    response = Response(body, mimetype=name_format.mimetype)
    if content_encoding is not None:
        response.headers["Content-Encoding"] = content_encoding
    response.headers["Vary"] = _VARY
    response.set_etag(etag)
    if link is not None:
        response.headers["Link"] = link
    return response


def _identity_etag(
    content_id: str | None, query: PageQuery, name_format: NameFormat, budget: int, coding: ContentCoding
) -> str | None:
    """The tag of this request's response, from what it depends on, when the data cannot change."""
    if content_id is None:
        return None
    # Everything the body and Link depend on besides the data: the page asked for, the format,
    # the size limit of the event source, the URL prefix of the next link, and a content coding
    # (none for identity, so tags of unencoded bodies stay what they were before gzip).
    return query_etag(
        content_id,
        query.after,
        query.limit,
        query.format is not None,
        name_format.name,
        budget,
        request.script_root,
        request.path,
        *coding.tag_parts,
    )


def _negotiate() -> NameFormat:
    # Most clients send no Accept or "*/*": answer those without parsing (they mean text).
    accept = request.environ.get("HTTP_ACCEPT", "")
    if accept in _ANYTHING:
        return TEXT
    name_format = _format_for_accept(accept)
    if name_format is None:
        raise ApiError(406, "not_acceptable", _NOT_ACCEPTABLE_MESSAGE)
    return name_format


@lru_cache(maxsize=_ACCEPT_CACHE_SIZE)
def _format_for_accept(accept: str) -> NameFormat | None:
    """The format an Accept header chooses (None: neither is acceptable; app/web/negotiation.py
    says how). Cached: browsers send one long header that would be parsed and matched on every
    request (bench/RESULTS.md)."""
    best = choose_media_type(accept, _OFFERED_TYPES)
    return None if best is None else _OFFERED[best]


def _next_url(query: PageQuery, next_cursor: str) -> str:
    """This request's URL, from the root the client used (stage, base path), at the next page."""
    parameters: dict[str, Any] = {"after": next_cursor}
    if query.limit is not None:
        parameters["limit"] = query.limit
    if query.format is not None:
        parameters["format"] = query.format.name
    # The prefix comes from the event (stage) or the configuration (base path): escaped, and one
    # leading "/", so the header is always one relative link ("//host" would leave the site).
    prefix = quote(request.script_root, safe="/$-_.~")
    prefix = "/" + prefix.lstrip("/") if prefix else ""
    return f"{prefix}{quote(request.path)}?{urlencode(parameters)}"
