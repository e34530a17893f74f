"""Content codings (RFC 9110 §8.4.1, §12.5.3): gzip pages for clients that accept it.

API Gateway HTTP APIs, function URLs and ALBs do not compress, and names compress well; the
rules for choosing gzip are docs/http.md ("Compression").

serverless-wsgi base64-encodes every response with a Content-Encoding, so a gzip page costs 4/3
of its compressed size in the proxy response JSON (base64 is never escaped). GzipMeter fills
a page to that budget exactly: the names are compressed as they are read, by one streaming
zlib compressor; a Z_SYNC_FLUSH makes the size so far exact, and `copy()` tries the chunk
that would overflow, name count by bisection, without touching the stream.

Not brotli (`br`): its compressor cannot be copied, so a page could not be fitted exactly
without compressing it again; it is also a large wheel, slower to import and, at the
qualities that beat gzip, slower to run (figures in the commit that added this module).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

from werkzeug.http import parse_accept_header

from app.types import NameFormat

__all__ = [
    "GZIP",
    "GZIP_LEVEL",
    "GZIP_ONLY",
    "IDENTITY",
    "MIN_COMPRESSED_SIZE",
    "NOT_ACCEPTABLE_MESSAGE",
    "ContentCoding",
    "GzipMeter",
    "coding_for",
]

# Smaller texts are sent uncompressed: a gzip stream has 18 bytes of framing, and base64 adds a third.
MIN_COMPRESSED_SIZE: int = 1024
# zlib's fastest level: on names (bench/pagination.py) level 6 packs ~4% more names into a
# page for ~3× the CPU; the page deadline and Lambda's CPU share make time the scarcer.
GZIP_LEVEL: int = 1
_GZIP_WBITS: int = 31  # a gzip header and trailer around the deflate stream
# Distinct Accept-Encoding headers remembered; a client cannot grow it past this bound.
_CACHE_SIZE: int = 256
# Worst case bytes of `n` bytes of deflate input, with margin: stored blocks cost 5 bytes per
# at most 16 KiB, and a sync flush 5 more (zlib's deflateBound is n + n/4096 + n/16384 + 13).
_BLOCK_OVERHEAD_SHIFT: int = 10
_FLUSH_OVERHEAD: int = 64
# The gzip header (10 bytes) and trailer (8), the final block, and margin.
_GZIP_FRAMING: int = 64
_MARK: str = "\0"
# Text flushed before its compression ratio sizes chunks.
_RATIO_MIN_TEXT: int = 16_384


@dataclass(frozen=True)
class ContentCoding:
    """What a request's Accept-Encoding chose: `name` for bodies over MIN_COMPRESSED_SIZE."""

    name: str
    # Whether a small body may be sent without a coding (no `identity;q=0`).
    identity_allowed: bool = True
    # What the ETag of a body sent with this choice depends on: nothing for no coding; for
    # gzip, the zlib that writes the stream and its level (other bytes, another strong tag).
    tag_parts: tuple[str, ...] = ()


_GZIP_TAG: str = f"gzip/{GZIP_LEVEL}/{zlib.ZLIB_RUNTIME_VERSION}"
IDENTITY: ContentCoding = ContentCoding("identity")
GZIP: ContentCoding = ContentCoding("gzip", tag_parts=(_GZIP_TAG,))
GZIP_ONLY: ContentCoding = ContentCoding(
    "gzip", identity_allowed=False, tag_parts=(_GZIP_TAG.replace("gzip", "gzip-only", 1),)
)
NOT_ACCEPTABLE_MESSAGE: str = "GET /users sends gzip or no content coding; the Accept-Encoding header allows neither."


@lru_cache(maxsize=_CACHE_SIZE)
def coding_for(accept_encoding: str | None) -> ContentCoding | None:
    """The coding an Accept-Encoding value (None: no header) chooses; None if neither gzip nor no
    coding is acceptable (a 406). Cached: clients send the same few headers again and again."""
    if accept_encoding is None:
        return IDENTITY
    named: dict[str, float] = {}
    anything: float | None = None
    for value, quality in parse_accept_header(accept_encoding):
        coding = value.lower()
        if coding == "*":
            anything = quality if anything is None else max(anything, quality)
        else:
            coding = "gzip" if coding == "x-gzip" else coding
            named[coding] = max(named.get(coding, 0.0), quality)
    gzip_quality = named.get("gzip", anything or 0.0)
    # No coding is acceptable unless refused by name or by `*;q=0`; unnamed, it comes last.
    identity_quality = named.get("identity", 0.001 if anything is None else anything)
    if gzip_quality > 0 and gzip_quality >= identity_quality:
        return GZIP if identity_quality > 0 else GZIP_ONLY
    return IDENTITY if identity_quality > 0 else None


def _deflate_bound(size: int) -> int:
    return size + (size >> _BLOCK_OVERHEAD_SHIFT) + _FLUSH_OVERHEAD


class GzipMeter:
    """Compresses a page as it is collected, to at most `budget` bytes once base64-encoded (a BodyMeter).

    `text`: the pieces already taken, joined (app/web/users.py keeps a page as text while it is
    small, and hands it over here once it is not). Far from the budget, pieces are compressed
    without flushing (as well as one pass would): their worst case (_deflate_bound) still
    fits. When it might not, a sync flush makes the size exact, and a piece that may overflow
    is tried on a copy of the compressor.
    """

    def __init__(self, budget: int, name_format: NameFormat, coding: ContentCoding = GZIP, *, text: str = "") -> None:
        self.name_format = name_format
        self.coding = coding
        # Base64 writes 4 characters for every 3 bytes (and for a last 1 or 2).
        self.room = budget // 4 * 3 - _deflate_bound(name_format.framing_size) - _GZIP_FRAMING
        self.spent = 0
        head = name_format.body([_MARK], None).partition(_MARK)[0]
        self._compressor: Any = zlib.compressobj(GZIP_LEVEL, zlib.DEFLATED, _GZIP_WBITS)
        start = (head + text).encode("utf-8")
        self._output: list[bytes] = [self._compressor.compress(start), self._compressor.flush(zlib.Z_SYNC_FLUSH)]
        self._flushed = sum(map(len, self._output))  # compressed bytes of all text but the last _pending bytes
        self._flushed_text = len(start)
        self._pending = 0  # text bytes compressed since the last flush
        self._count()

    def fit(self, names: list[str], *, separated: bool) -> tuple[str, int]:
        if not names:
            return "", 0
        piece = self.name_format.join(names)
        data = ("," + piece if separated else piece).encode("utf-8")
        if self._flushed + _deflate_bound(self._pending + len(data)) > self.room:
            self._sync()
        if self._flushed + _deflate_bound(self._pending + len(data)) <= self.room:
            self._output.append(self._compressor.compress(data))
            self._pending += len(data)
            self._count()
            return piece, len(names)
        return self._fit_exactly(names, separated=separated)

    def _sync(self) -> None:
        if self._pending:
            self._output.append(self._compressor.flush(zlib.Z_SYNC_FLUSH))
            self._flushed = sum(map(len, self._output))
            self._flushed_text += self._pending
            self._pending = 0

    def _count(self) -> None:
        # Only sizes the next chunk: unflushed text counted at the ratio flushed so far once that
        # says something (before, as text: the header alone would make the ratio huge and the
        # chunks tiny), at most the room (collect_page then asks for a few rows).
        pending = self._pending
        if self._flushed_text >= _RATIO_MIN_TEXT:
            pending = -(-pending * self._flushed // self._flushed_text)
        self.spent = min(self._flushed + pending, self.room)

    def _fit_exactly(self, names: list[str], *, separated: bool) -> tuple[str, int]:
        """Near the budget: each try compresses on a copy, kept if it fits. All names first,
        then by bisection: names[:taken] are in, more than names[:most] do not fit."""
        pieces: list[str] = []
        taken, most = 0, len(names)
        trying = most
        while taken < most:
            piece = self.name_format.join(names[taken:trying])
            data = ("," + piece if separated or taken else piece).encode("utf-8")
            trial = self._compressor.copy()
            compressed = trial.compress(data) + trial.flush(zlib.Z_SYNC_FLUSH)
            if self._flushed + len(compressed) <= self.room:
                self._compressor = trial
                self._output.append(compressed)
                self._flushed += len(compressed)
                self._flushed_text += len(data)
                pieces.append(piece)
                taken = trying
            else:
                most = trying - 1
            trying = (taken + most + 1) // 2
        self._count()
        return ",".join(pieces), taken

    def finish(self, next_cursor: str | None) -> bytes:
        """The gzip body: the pieces so far, then the rest of the format's framing."""
        tail = self.name_format.body([_MARK], next_cursor).partition(_MARK)[2].encode("utf-8")
        self._output.append(self._compressor.compress(tail))
        self._output.append(self._compressor.flush(zlib.Z_FINISH))
        return b"".join(self._output)
