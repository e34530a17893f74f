"""Names that break naive formats, and how a client reads them back from a page."""

from __future__ import annotations

import csv
import io

__all__ = ["TRICKY_NAMES", "parse_text_body"]

# Separators, quotes, line breaks, escapes, control characters, non-ASCII, SQL.
TRICKY_NAMES: list[str] = [
    "Alice",
    "",
    "a,b",
    ",",
    ",leading",
    "trailing,",
    'say "hi"',
    '"',
    '""',
    "line\nbreak",
    "cr\rlf\r\n",
    "tab\there",
    "back\\slash",
    "\x00nul",
    "\x01\x1f\x7fcontrol",
    "Zoë",
    "李雷",
    "Émile 🚀",
    "e\u0301 combining",
    "\u2028line separator\u2029",
    "\ufeffbom",
    " padded ",
    "'; DROP TABLE users; --",
    '</users>; rel="next"',
]


def parse_text_body(body: str) -> list[str]:
    """A text page as any CSV reader sees it: one record, or none for an empty body."""
    records = list(csv.reader(io.StringIO(body, newline=""), strict=True))
    assert len(records) <= 1, records[:2]
    return records[0] if records else []
