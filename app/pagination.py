"""Keyset pagination for GET /users: the query parameters, and pages cut by count and by size.

A page is read in chunks of at most FETCH_CHUNK_ROWS rows, each one keyset query
(`key > :after ORDER BY key LIMIT :count`), and reading stops as soon as the page is full,
by `limit` or by the byte budget. Memory and time per request follow the page, never the
table.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from werkzeug.datastructures import MultiDict

from app.cursor import CursorError, decode_cursor
from app.errors import ApiError
from app.name_formats import FORMATS, NameFormat, escaped_size

__all__ = ["FETCH_CHUNK_ROWS", "QUERY_PARAMETERS", "FetchRows", "Page", "PageQuery", "collect_page", "parse_page_query"]

# Rows per query. Small chunks die young: with 2,000 or more a full 6 MB page took ~30% longer,
# spent in the cyclic GC (measured on 1M rows); 500 costs ~1,100 cheap queries per such page.
FETCH_CHUNK_ROWS: int = 500
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


def parse_page_query(args: MultiDict[str, str], max_limit: int) -> PageQuery:
    """Validate the query string; ApiError 400 on anything but known parameters with valid values."""
    if not args:
        return _NO_QUERY
    for name in args:
        if name not in QUERY_PARAMETERS:
            raise ApiError(
                400, "invalid_parameter", f"Unknown query parameter {name[:40]!r}; /users accepts after, format, limit."
            )
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
    # Digits only: int() would also take " 7", "+7", "7_000" and non-ASCII digits. Longer than
    # the maximum is too large without parsing it (int() of 5,000 digits raises, too).
    digits_ok = raw.isascii() and raw.isdigit() and len(raw) <= len(str(max_limit))
    value = int(raw) if digits_ok else 0
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
    fetch: FetchRows, *, after: int | None, limit: int | None, name_format: NameFormat, budget: int
) -> Page:
    """Read the page after `after`: at most `limit` names, at most `budget` escaped bytes of body."""
    room = budget - name_format.framing_size
    pieces: list[str] = []
    spent = 0
    size = 0
    last_key = after
    while True:
        wanted = FETCH_CHUNK_ROWS if limit is None else min(FETCH_CHUNK_ROWS, limit - size + 1)
        rows = fetch(last_key, wanted)
        allowed = len(rows) if limit is None else min(len(rows), limit - size)
        names = [row[1] for row in rows] if allowed == len(rows) else [row[1] for row in rows[:allowed]]
        piece, cost, taken = _fit(names, name_format, room - spent, separated=bool(pieces))
        if taken:
            pieces.append(piece)
            spent += cost
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
