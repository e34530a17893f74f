"""`Accept` negotiation per RFC 9110 §12.5.1, between the few media types a route offers.

werkzeug parses the header (`parse_accept_header`: the list, the parameters, the q-values),
but its `MIMEAccept.best_match` does not fit: a range with parameters (`text/plain;
charset=utf-8`, `application/json; version=1`) only matches an offer with the same
parameters, so every such client got 406, and between equal q-values it prefers the more
specific range over the server's preference. The rules applied here are listed in
docs/pagination.md ("Content negotiation").
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from werkzeug.http import parse_accept_header

__all__ = ["choose_media_type"]

# RFC 9110 token characters; media-range = "*/*" / ( type "/*" ) / ( type "/" subtype ).
_TOKEN = r"[!#$%&'*+.^_`|~0-9A-Za-z-]+"
_MEDIA_RANGE = re.compile(rf"{_TOKEN}/{_TOKEN}")


def choose_media_type(accept: str, offered: Sequence[str]) -> str | None:
    """The member of `offered` (lowercase `type/subtype`, preferred first) that `accept` chooses.

    None: `accept` has valid members and all of them refuse every offer.
    """
    ranges: list[tuple[str, float]] = []
    for value, quality in parse_accept_header(accept):  # skips members whose q is not a qvalue
        media_range = value.split(";", 1)[0].strip().lower()
        if _MEDIA_RANGE.fullmatch(media_range) and not _is_bad_wildcard(media_range):
            ranges.append((media_range, quality))
    if not ranges:
        return offered[0] if offered else None
    best: str | None = None
    best_quality = 0.0
    for media_type in offered:
        quality = _quality(media_type, ranges)
        if quality > best_quality:
            best, best_quality = media_type, quality
    return best


def _is_bad_wildcard(media_range: str) -> bool:
    # "text/*" and "*/*" are ranges; "text/pl*in" or "*/json" are not (the token allows "*").
    kind, _, subtype = media_range.partition("/")
    return ("*" in kind and media_range != "*/*") or ("*" in subtype and subtype != "*")


def _quality(media_type: str, ranges: list[tuple[str, float]]) -> float:
    kind = media_type.split("/", 1)[0]
    by_specificity: dict[int, float] = {}
    for media_range, quality in ranges:
        if media_range == media_type:
            specificity = 2
        elif media_range == f"{kind}/*":
            specificity = 1
        elif media_range == "*/*":
            specificity = 0
        else:
            continue
        by_specificity[specificity] = max(quality, by_specificity.get(specificity, 0.0))
    return by_specificity[max(by_specificity)] if by_specificity else 0.0
