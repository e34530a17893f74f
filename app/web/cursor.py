"""Opaque page cursors: the key of the last user on a page, versioned and checksummed.

A cursor is 20 URL-safe base64 characters (no padding, nothing to percent-encode, so it
survives every gateway's query-string handling unchanged) encoding 15 bytes:
a version byte, the key as a signed 64-bit integer, and a 6-byte BLAKE2b checksum.
Why a checksum and not a signature: docs/pagination.md ("Cursors").
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re

__all__ = ["CURSOR_LENGTH", "CursorError", "decode_cursor", "encode_cursor"]

CURSOR_VERSION: int = 1
CURSOR_LENGTH: int = 20
_KEY_BYTES: int = 8
_CHECK_BYTES: int = 6
_CHECK_PERSON: bytes = b"users-api.cursor"
_CURSOR_PATTERN: re.Pattern[str] = re.compile(rf"[A-Za-z0-9_-]{{{CURSOR_LENGTH}}}")
_KEY_MIN: int = -(2**63)
_KEY_MAX: int = 2**63 - 1


class CursorError(ValueError):
    """Raised when a cursor was not made by `encode_cursor` (corrupt, truncated, edited, other version)."""


def _checksum(payload: bytes) -> bytes:
    return hashlib.blake2b(payload, digest_size=_CHECK_BYTES, person=_CHECK_PERSON).digest()


def encode_cursor(key: object) -> str:
    """The cursor that resumes a listing after the user whose key is `key` (a 64-bit integer)."""
    # The key comes from the database untyped; a table keyed otherwise fails here, clearly.
    if not isinstance(key, int) or not _KEY_MIN <= key <= _KEY_MAX:
        raise TypeError(f"users are paged by a 64-bit integer key, got {type(key).__name__} {key!r:.40}")
    payload = bytes((CURSOR_VERSION,)) + key.to_bytes(_KEY_BYTES, "big", signed=True)
    return base64.urlsafe_b64encode(payload + _checksum(payload)).decode("ascii")


def decode_cursor(cursor: str) -> int:
    """The key a cursor resumes after; CursorError unless it is exactly what `encode_cursor` made."""
    # 15 bytes are exactly 20 base64 characters: every string that passes this check
    # decodes to one byte string that encodes back to it, so there is one form per key.
    if _CURSOR_PATTERN.fullmatch(cursor) is None:
        raise CursorError("malformed cursor")
    try:
        raw = base64.urlsafe_b64decode(cursor)
    except binascii.Error:  # pragma: no cover - the pattern admits only valid base64
        raise CursorError("malformed cursor") from None
    payload, check = raw[: 1 + _KEY_BYTES], raw[1 + _KEY_BYTES :]
    if payload[0] != CURSOR_VERSION:
        raise CursorError("unsupported cursor version")
    if not hmac.compare_digest(check, _checksum(payload)):
        raise CursorError("cursor checksum mismatch")
    return int.from_bytes(payload[1:], "big", signed=True)
