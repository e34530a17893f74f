"""GET /users: the names in key order, as text or JSON, one response or a page of them.

Everything a warm GET runs in the web layer is here, in the order a request meets it: the
query parameters, the format (Accept), the identity ETag and If-None-Match, the page read in
chunks and cut by count, size or deadline, the body and the `next` link; gzip (encoding.py)
only once a body is worth compressing. The contract is docs/http.md and docs/pagination.md
(formats, size budget, cursors); the comments here say why the code does it that way.

Chunks: each is one keyset query, the first of FETCH_CHUNK_ROWS rows, each next one twice as
large up to MAX_CHUNK_ROWS across a network, and never larger than what the rows read so far
say will fit in the room left, so memory and time per request follow the page, not the table.
Bodies are counted as they will appear inside the proxy response (RESPONSE_LIMIT_KEY, put in
the environ by the adapter): escaped JSON text, or base64 of the gzip stream.
"""

from __future__ import annotations

import base64
import hashlib
import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache, partial
from typing import Any
from urllib.parse import quote, urlencode

from flask import Blueprint, Response, current_app, g, request
from sqlalchemy import Connection
from werkzeug.datastructures import MultiDict
from werkzeug.http import parse_etags

from app.config import SETTINGS_KEY
from app.storage import DATABASE_KEY, Database
from app.storage.queries import answer_deadline, fetch_users_after, read_with_reconnect, reads_cross_a_network
from app.types import LAMBDA_RESPONSE_LIMIT, RESPONSE_LIMIT_KEY, BodyMeter, NameFormat
from app.web.cursor import CURSOR_LENGTH, CursorError, decode_cursor, encode_cursor
from app.web.encoding import IDENTITY, MIN_COMPRESSED_SIZE, NOT_ACCEPTABLE_MESSAGE, ContentCoding, GzipMeter, coding_for
from app.web.errors import ApiError
from app.web.negotiation import choose_media_type

__all__ = [
    "FETCH_CHUNK_ROWS",
    "FORMATS",
    "JSON",
    "MAX_CHUNK_ROWS",
    "QUERY_PARAMETERS",
    "REPRESENTATION_VERSION",
    "RESPONSE_RESERVE",
    "TEXT",
    "SmallTextFirst",
    "EscapedMeter",
    "FetchRows",
    "Page",
    "PageQuery",
    "body_budget",
    "body_etag",
    "bp",
    "collect_page",
    "escaped_size",
    "parse_page_query",
    "query_etag",
]

bp = Blueprint("users", __name__)

# Status, headers and the proxy dict's own JSON take well under 1 KB; the largest header is
# `Link`, whose path holds at most a stage name (128 characters) or API_GATEWAY_BASE_PATH.
RESPONSE_RESERVE: int = 16_384
# Part of every identity-based tag: bump it when the same data would be written differently
# (format, Link), so that clients holding an old tag get the new body.
REPRESENTATION_VERSION: str = "1"
_DIGEST_BYTES: int = 16
# Responses differ by Accept (the format) and Accept-Encoding (gzip or not); CORS adds Origin.
_VARY: str = "Accept, Accept-Encoding"
_NOT_ACCEPTABLE_MESSAGE: str = "GET /users sends text/plain or application/json; the Accept header allows neither."
# Distinct Accept headers remembered; a client cannot grow it past this bound.
_ACCEPT_CACHE_SIZE: int = 256
_ANYTHING: frozenset[str] = frozenset({"", "*/*"})


def body_budget(environ: Mapping[str, Any]) -> int:
    """Escaped bytes a response body may take (framing included) for this request."""
    limit: int = environ.get(RESPONSE_LIMIT_KEY, LAMBDA_RESPONSE_LIMIT)
    return limit - RESPONSE_RESERVE


# --- formats ------------------------------------------------------------------------------

# Longest `next` value a JSON page can carry: a cursor in quotes.
_LONGEST_NEXT: str = json.dumps("C" * CURSOR_LENGTH)


def escaped_size(text: str) -> int:
    """Bytes `text` takes as a JSON string in the proxy response, without the enclosing quotes."""
    return len(json.dumps(text)) - 2


class _Text:
    name = "text"
    mimetype = "text/plain"
    framing_size = 0

    def join(self, names: list[str]) -> str:
        joined = ",".join(names)
        # Nearly always no name needs quotes: then the plain join is the answer, checked
        # with a few C-speed scans instead of a Python-level test per name.
        if (
            names
            and joined.count(",") == len(names) - 1
            and '"' not in joined
            and "\n" not in joined
            and "\r" not in joined
            and "" not in names
        ):
            return joined
        return ",".join(map(self.encode, names))

    def encode(self, name: str) -> str:
        if not name or "," in name or '"' in name or "\n" in name or "\r" in name:
            # Empty names are quoted too: a page holding one empty name must not read as no names.
            return '"' + name.replace('"', '""') + '"'
        return name

    def body(self, pieces: Sequence[str], next_cursor: str | None) -> str:
        return ",".join(pieces)


class _Json:
    name = "json"
    mimetype = "application/json"
    framing_size = escaped_size('{"users":[],"next":' + _LONGEST_NEXT + "}")

    def join(self, names: list[str]) -> str:
        return json.dumps(names, ensure_ascii=False, separators=(",", ":"))[1:-1]

    def encode(self, name: str) -> str:
        return json.dumps(name, ensure_ascii=False)

    def body(self, pieces: Sequence[str], next_cursor: str | None) -> str:
        return '{"users":[' + ",".join(pieces) + '],"next":' + json.dumps(next_cursor) + "}"


TEXT: NameFormat = _Text()
JSON: NameFormat = _Json()
# By the name `?format=` takes.
FORMATS: dict[str, NameFormat] = {TEXT.name: TEXT, JSON.name: JSON}


# --- the query ------------------------------------------------------------------------------

# Rows of the first query: most pages are small, and a warm GET of one is one query. Across a
# network chunks then double, so a page of N rows takes about log2(N / 500) queries (a round
# trip each), up to MAX_CHUNK_ROWS: the most rows held at once. On SQLite they stay at 500:
# with 4,000 or 50,000 a full 6 MB page took 30-45% longer, spent mostly in the cyclic GC
# (bench/pagination.py, 1M rows: 498 ms at 500, 648 ms at 4,000, 719 ms at 50,000).
FETCH_CHUNK_ROWS: int = 500
MAX_CHUNK_ROWS: int = 50_000
# A chunk sized by the room left asks this much more than the average row says, plus a few
# rows, so names longer than average rarely cost one more query.
_ROOM_SLACK: float = 1.02
_ROOM_EXTRA_ROWS: int = 64
QUERY_PARAMETERS: tuple[str, ...] = ("after", "format", "limit")

# (after, count) -> up to `count` (key, name) rows in key order, after `after` (None: from the start).
FetchRows = Callable[[int | None, int], Sequence[Sequence[Any]]]


@dataclass(frozen=True)
class PageQuery:
    """What the client asked for; None: not given."""

    after: int | None = None
    limit: int | None = None
    format: NameFormat | None = None


_NO_QUERY = PageQuery()


@dataclass(frozen=True)
class Page:
    """Names of one page, already encoded in pieces, and where the next page starts."""

    pieces: list[str]
    size: int
    # Key of the page's last user when more follow; None on the last page.
    next_after: int | None
    # Ended early because the invocation's time ran low: shorter than the same request gets
    # with time to spare, so its body is not the one an identity-based ETag names.
    cut_by_deadline: bool = False


def parse_page_query(args: MultiDict[str, str], max_limit: int) -> PageQuery:
    """Validate the query string; ApiError 400 on anything but known parameters with valid values."""
    if not args:
        return _NO_QUERY
    # Unknown parameters are ignored, as HTTP APIs do: cache-busters (`_=...`), `utm_*`,
    # `fbclid` and the sample events' `foo=bar` must not break a listing. A known one given
    # twice is refused: which cursor or limit was meant is ambiguous.
    for name in QUERY_PARAMETERS:
        if len(args.getlist(name)) > 1:
            raise ApiError(400, "invalid_parameter", f"Query parameter {name!r} is given more than once.")
    return PageQuery(
        after=_parse_after(args.get("after")),
        limit=_parse_limit(args.get("limit"), max_limit),
        format=_parse_format(args.get("format")),
    )


def _parse_after(raw: str | None) -> int | None:
    if raw is None:
        return None
    try:
        return decode_cursor(raw)
    except CursorError:
        raise ApiError(
            400, "invalid_cursor", "after must be a cursor taken unchanged from a next link or a JSON 'next'."
        ) from None


def _parse_limit(raw: str | None, max_limit: int) -> int | None:
    if raw is None:
        return None
    # Digits only: int() would also take " 7", "+7", "7_000" and non-ASCII digits. Leading
    # zeros are allowed, any number of them ("00002" and "000002" are both 2); what is left
    # longer than the maximum is too large without parsing it (int() of 5,000 digits raises).
    significant = raw.lstrip("0")
    digits_ok = raw.isascii() and raw.isdigit() and len(significant) <= len(str(max_limit))
    value = int(significant or "0") if digits_ok else 0
    if not 1 <= value <= max_limit:
        raise ApiError(400, "invalid_limit", f"limit must be a whole number from 1 to {max_limit}.")
    return value


def _parse_format(raw: str | None) -> NameFormat | None:
    if raw is None:
        return None
    name_format = FORMATS.get(raw)
    if name_format is None:
        raise ApiError(400, "invalid_format", "format must be 'text' or 'json'.")
    return name_format


# --- the page -------------------------------------------------------------------------------


def collect_page(
    fetch: FetchRows,
    *,
    after: int | None,
    limit: int | None,
    name_format: NameFormat,
    budget: int,
    deadline: float | None = None,
    grow: bool = True,
    clock: Callable[[], float] = time.monotonic,
    meter: BodyMeter | None = None,
) -> Page:
    """Read the page after `after`: at most `limit` names, at most `budget` escaped bytes of body.

    `meter`: how the body is counted against the budget; by default EscapedMeter(budget, name_format)
    (a compressed body brings its own, app/web/encoding.py).

    `grow`: chunks double (each read is a round trip to a server); else all are FETCH_CHUNK_ROWS
    (SQLite, in-process: larger chunks only cost time in the cyclic GC, bench/pagination.py).

    With a `deadline` (clock() time), no chunk is started that the time per row so far says
    would end after it: the page ends there with a `next` link. The first chunk is always read.
    """
    if meter is None:
        meter = EscapedMeter(budget, name_format)
    pieces: list[str] = []
    size = 0
    last_key = after
    chunk = FETCH_CHUNK_ROWS
    started = clock()
    read = 0  # rows fetched, for the time per row
    while True:
        wanted = chunk if limit is None else min(chunk, limit - size + 1)
        if size:
            # The room left, in rows as long as those so far, bounds the chunk (and memory).
            spent = meter.spent
            wanted = min(wanted, int((meter.room - spent) * size / spent * _ROOM_SLACK) + _ROOM_EXTRA_ROWS)
            if deadline is not None:
                now = clock()
                per_row = (now - started) / read
                fits_in_time = int((deadline - now) / per_row) if per_row > 0 else wanted
                if fits_in_time < min(wanted, FETCH_CHUNK_ROWS):
                    return Page(pieces, size, last_key, cut_by_deadline=True)  # out of time: a shorter page
                wanted = min(wanted, fits_in_time)
        rows = fetch(last_key, wanted)
        read += len(rows) or 1
        allowed = len(rows) if limit is None else min(len(rows), limit - size)
        names = [row[1] for row in rows] if allowed == len(rows) else [row[1] for row in rows[:allowed]]
        piece, taken = meter.fit(names, separated=bool(pieces))
        if taken:
            pieces.append(piece)
            size += taken
            last_key = rows[taken - 1][0]
        if taken < len(names):  # the budget is full
            if not size:
                raise ApiError(
                    500, "name_too_large", "A user's name is too large to be sent in one response on this platform."
                )
            return Page(pieces, size, last_key)
        if len(rows) > allowed:  # the limit is reached and more rows follow
            return Page(pieces, size, last_key)
        if len(rows) < wanted:  # the table ends here
            return Page(pieces, size, None)
        if grow:
            chunk = min(chunk * 2, MAX_CHUNK_ROWS)


class EscapedMeter:
    """A BodyMeter counting the body as text inside the proxy response JSON: its escaped size (`escaped_size`)."""

    def __init__(self, budget: int, name_format: NameFormat) -> None:
        self.name_format = name_format
        self.room = budget - name_format.framing_size
        self.spent = 0

    def fit(self, names: list[str], *, separated: bool) -> tuple[str, int]:
        piece, cost, taken = _fit(names, self.name_format, self.room - self.spent, separated=separated)
        self.spent += cost
        return piece, taken


def _fit(names: list[str], name_format: NameFormat, room: int, *, separated: bool) -> tuple[str, int, int]:
    """(piece, escaped size, count) for the longest prefix of `names` that fits in `room` bytes."""
    if not names:
        return "", 0, 0
    piece = name_format.join(names)
    cost = escaped_size(piece) + (1 if separated else 0)
    if cost <= room:
        return piece, cost, len(names)
    # Only the chunk that fills the page gets here: measure it name by name.
    used = 0
    taken = 0
    for name in names:
        name_cost = escaped_size(name_format.encode(name)) + (1 if taken or separated else 0)
        if used + name_cost > room:
            break
        used += name_cost
        taken += 1
    return name_format.join(names[:taken]), used, taken


class SmallTextFirst:
    """The BodyMeter of a page for a client that accepts gzip.

    A body of at most MIN_COMPRESSED_SIZE bytes gains nothing from gzip (18 bytes of framing,
    and base64 adds a third) and is sent as it is: most are, so the page is counted as text
    here first, without a compressor. The piece that would take it past that size hands the
    page to a GzipMeter (app/web/encoding.py), which compresses it as it is read, to the budget
    the response's base64 leaves.
    """

    def __init__(self, budget: int, name_format: NameFormat, coding: ContentCoding) -> None:
        self.budget = budget
        self.name_format = name_format
        self.coding = coding
        self.pieces: list[str] = []
        self.gzip: GzipMeter | None = None
        self._text = EscapedMeter(budget, name_format)
        self._text_size = len(name_format.body([], None).encode("utf-8"))

    @property
    def room(self) -> int:
        return self._text.room if self.gzip is None else self.gzip.room

    @property
    def spent(self) -> int:
        return self._text.spent if self.gzip is None else self.gzip.spent

    def fit(self, names: list[str], *, separated: bool) -> tuple[str, int]:
        if not names:
            return "", 0  # the read after a full chunk found none: nothing to add, not an empty name
        if self.gzip is None:
            text = self._text
            piece, cost, taken = _fit(names, self.name_format, text.room - text.spent, separated=separated)
            size = self._text_size + len(piece.encode("utf-8")) + separated
            if taken == len(names) and size <= MIN_COMPRESSED_SIZE:
                self.pieces.append(piece)
                self._text_size = size
                text.spent += cost
                return piece, taken
            self.gzip = GzipMeter(self.budget, self.name_format, self.coding, text=",".join(self.pieces))
        return self.gzip.fit(names, separated=separated)

    def finish(self, next_cursor: str | None) -> bytes | None:
        """The gzip body; None when the page is small enough to be sent as text, and that is allowed."""
        if self.gzip is None:
            if (
                self.coding.identity_allowed
                and len(self.name_format.body(self.pieces, next_cursor).encode("utf-8")) <= MIN_COMPRESSED_SIZE
            ):
                return None
            self.gzip = GzipMeter(self.budget, self.name_format, self.coding, text=",".join(self.pieces))
        return self.gzip.finish(next_cursor)


# --- ETags ----------------------------------------------------------------------------------


def _tag(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def query_etag(content_id: str, *parts: object) -> str:
    """The (unquoted) tag of a response that depends only on `content_id` and `parts`."""
    key = "\x1f".join([REPRESENTATION_VERSION, content_id, *map(str, parts)])
    return _tag(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_BYTES).digest())


def body_etag(body: str | bytes, *parts: object) -> str:
    """The (unquoted) tag of a response read from a mutable database: its body (text, or the
    bytes of an encoded one) and the headers `parts` (Content-Encoding among them)."""
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    digest.update("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"))
    digest.update(b"\x1e")
    digest.update(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
    return _tag(digest.digest())


def is_not_modified(etag: str) -> bool:
    """Whether this GET/HEAD's If-None-Match matches `etag` (weak comparison; lists and `*`)."""
    header = request.environ.get("HTTP_IF_NONE_MATCH")
    if not header or request.method not in ("GET", "HEAD"):
        return False
    return parse_etags(header).contains_weak(etag)


# --- the view -------------------------------------------------------------------------------

# What `Accept` chooses between; on a tie (`*/*`, equal q-values) the first, the seed's text.
_OFFERED: dict[str, NameFormat] = {TEXT.mimetype: TEXT, JSON.mimetype: JSON}
_OFFERED_TYPES: tuple[str, ...] = tuple(_OFFERED)


@bp.before_app_request
def _prepare_database() -> None:
    # Once per request, here at the edge: when the answer must be ready, from the Lambda context
    # serverless-wsgi puts in the environ; passed down to the database (an S3 snapshot's refresh)
    # and to the reads.
    g.deadline = answer_deadline(request.environ.get("serverless.context"))
    database: Database = current_app.extensions[DATABASE_KEY]
    if database.refreshes:
        database.before_request(g.deadline)


@bp.get("/users")
def list_users() -> Response:
    """Names in key order: all that fit in one response, or one page of them with a `next` link."""
    query = parse_page_query(request.args, current_app.extensions[SETTINGS_KEY].max_page_limit)
    name_format = query.format or _negotiate()
    budget = body_budget(request.environ)
    coding = coding_for(request.environ.get("HTTP_ACCEPT_ENCODING"))
    if coding is None:
        raise ApiError(406, "not_acceptable", NOT_ACCEPTABLE_MESSAGE, vary=_VARY)
    database: Database = current_app.extensions[DATABASE_KEY]
    etag = _identity_etag(database.content_id, query, name_format, budget, coding)
    if etag is not None and _is_not_modified(etag):
        return _not_modified(etag)  # the database is not read
    deadline: float | None = g.deadline

    meter: BodyMeter | None = None

    def read_page(conn: Connection) -> Page:
        nonlocal meter
        # Afresh for each try: a reconnect reads again.
        meter = EscapedMeter(budget, name_format) if coding is IDENTITY else SmallTextFirst(budget, name_format, coding)
        return collect_page(
            partial(fetch_users_after, conn),
            after=query.after,
            limit=query.limit,
            name_format=name_format,
            budget=budget,
            deadline=deadline,
            grow=reads_cross_a_network(conn),
            meter=meter,
        )

    engine = database.engine
    assert engine is not None  # only an S3 snapshot has none, and then before_request raised
    page = read_with_reconnect(engine, read_page, repair=database.repair, deadline=deadline)
    next_cursor = None if page.next_after is None else encode_cursor(page.next_after)
    body: str | bytes | None = meter.finish(next_cursor) if isinstance(meter, SmallTextFirst) else None
    content_encoding = None if body is None else coding.name
    if body is None:
        body = name_format.body(page.pieces, next_cursor)
    link = None if next_cursor is None else f'<{_next_url(query, next_cursor)}>; rel="next"'
    if etag is None or page.cut_by_deadline:
        etag = body_etag(body, name_format.mimetype, link, *([content_encoding] if content_encoding else []))
        if _is_not_modified(etag):
            return _not_modified(etag)
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


def _is_not_modified(etag: str) -> bool:
    """Whether this GET/HEAD's If-None-Match matches `etag` (weak comparison; lists and `*`)."""
    header = request.environ.get("HTTP_IF_NONE_MATCH")
    if not header or request.method not in ("GET", "HEAD"):
        return False
    return parse_etags(header).contains_weak(etag)


def _not_modified(etag: str) -> Response:
    """304 with no body: the ETag and Vary a 200 would carry (RFC 9110 §15.4.5)."""
    response = Response(status=304)
    response.set_etag(etag)
    response.headers["Vary"] = _VARY
    return response


def _negotiate() -> NameFormat:
    # Most clients send no Accept or "*/*": answer those without parsing (they mean text).
    accept = request.environ.get("HTTP_ACCEPT", "")
    if accept in _ANYTHING:
        return TEXT
    name_format = _format_for_accept(accept)
    if name_format is None:
        raise ApiError(406, "not_acceptable", _NOT_ACCEPTABLE_MESSAGE, vary=_VARY)
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
