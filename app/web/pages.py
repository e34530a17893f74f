"""GET /users pages: the query parameters, pages cut by count and by size, and how they are written.

A page is read in chunks, each one keyset query (`key > :after ORDER BY key LIMIT :count`):
the first of FETCH_CHUNK_ROWS rows, each next one twice as large up to MAX_CHUNK_ROWS, and no
larger than what the rows read so far say will fit in the room left. Reading stops as soon as
the page is full, by `limit` or by the byte budget, or when the invocation's deadline is near:
then the page is shorter and has a `next` link. Memory and time per request follow the page,
never the table.

Formats. Text (`text/plain; charset=utf-8`) is one CSV record (RFC 4180): names joined by
commas, and a name is put in double quotes, with its own double quotes doubled, only when
it is empty or contains a comma, a double quote, CR or LF. Every other name is sent as is,
so a plain list reads exactly like the seed's `",".join(names)`; any CSV reader splits it
back. JSON (`application/json`) is `{"users": [...], "next": <cursor or null>}`, compact.

Sizes. Lambda rejects a synchronous response whose JSON exceeds 6 MB and an ALB target's
response JSON may not exceed 1 MB; either way the client gets a 502. The adapter puts the
limit of the request's event source in the WSGI environ (RESPONSE_LIMIT_KEY); bodies are
counted as they will appear inside the proxy response: a JSON string escaped with
`ensure_ascii` (`"` and `\\` take 2 bytes, control characters 6, other non-ASCII characters
6 or 12), the most the runtime's serialiser can produce, leaving a reserve for the status,
the headers and the JSON around them. A gzip body is counted by its own BodyMeter, in
base64-encoded compressed bytes (app/web/encoding.py).
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from app.types import LAMBDA_RESPONSE_LIMIT, RESPONSE_LIMIT_KEY
from app.web.cursor import CURSOR_LENGTH, CursorError, decode_cursor
from app.web.errors import ApiError

__all__ = [
    "FETCH_CHUNK_ROWS",
    "FORMATS",
    "JSON",
    "MAX_CHUNK_ROWS",
    "QUERY_PARAMETERS",
    "RESPONSE_RESERVE",
    "TEXT",
    "BodyMeter",
    "EscapedMeter",
    "FetchRows",
    "NameFormat",
    "Page",
    "PageQuery",
    "body_budget",
    "collect_page",
    "escaped_size",
    "parse_page_query",
]

# Status, headers and the proxy dict's own JSON take well under 1 KB; the largest header is
# `Link`, whose path holds at most a stage name (128 characters) or API_GATEWAY_BASE_PATH.
RESPONSE_RESERVE: int = 16_384


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


class NameFormat:
    """A representation of a page of names. Pieces (runs of names) are joined by one comma."""

    name: str
    mimetype: str
    # Escaped size of everything around the names, `next` at its longest.
    framing_size: int

    def join(self, names: list[str]) -> str:
        """One piece: `names` in this format, separated by commas."""
        raise NotImplementedError

    def encode(self, name: str) -> str:
        """One name in this format (a piece of one)."""
        raise NotImplementedError

    def body(self, pieces: Sequence[str], next_cursor: str | None) -> str:
        """The response body: the pieces in order, framed."""
        raise NotImplementedError


class _Text(NameFormat):
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


class _Json(NameFormat):
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


# --- pages --------------------------------------------------------------------------------

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


class BodyMeter:
    """Counts a page's body, piece by piece, against the room the response limit leaves it."""

    # Room for the names, and what the pieces taken so far take of it (an estimate while the
    # meter cannot tell exactly; it only sizes the next chunk). Positive once a name is taken.
    room: int
    spent: int

    def fit(self, names: list[str], *, separated: bool) -> tuple[str, int]:
        """(piece, count): the longest prefix of `names` that still fits, joined, now counted."""
        raise NotImplementedError


class EscapedMeter(BodyMeter):
    """The body as text inside the proxy response JSON: its escaped size (`escaped_size`)."""

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
