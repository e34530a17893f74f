"""How a page of names is written: the seed's comma-joined text, or JSON.

Text (`text/plain; charset=utf-8`) is one CSV record (RFC 4180): names joined by commas,
and a name is put in double quotes, with its own double quotes doubled, only when it is
empty or contains a comma, a double quote, CR or LF. Every other name is sent as is, so a
plain list reads exactly like the seed's `",".join(names)`; any CSV reader splits it back
(Python: `next(csv.reader([body]))`, empty body: no names).

JSON (`application/json`) is `{"users": [...], "next": <cursor or null>}`, compact, UTF-8.

Sizes are counted as the body will appear inside the Lambda proxy response: a JSON string,
escaped with `ensure_ascii` (`"` and `\\` take 2 bytes, control characters 6, other
non-ASCII characters 6 or 12). That is the most the runtime's serialiser can produce, so
a page counted this way fits however the runtime encodes it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

__all__ = ["FORMATS", "JSON", "TEXT", "NameFormat", "escaped_size"]

# Longest `next` value a JSON page can carry: a cursor (see app.cursor) in quotes.
_LONGEST_NEXT: str = json.dumps("C" * 20)


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
