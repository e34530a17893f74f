"""Cursors: opaque, one form per key, and nothing else accepted."""

from __future__ import annotations

import base64
import contextlib
import re

import pytest

from app.web.cursor import CURSOR_LENGTH, CursorError, decode_cursor, encode_cursor

KEY_MAX = 2**63 - 1
KEY_MIN = -(2**63)


def _flip_char(cursor: str, index: int) -> str:
    replacement = "A" if cursor[index] != "A" else "B"
    return cursor[:index] + replacement + cursor[index + 1 :]


def _with_version(cursor: str, version: int) -> str:
    raw = bytearray(base64.urlsafe_b64decode(cursor))
    raw[0] = version
    return base64.urlsafe_b64encode(bytes(raw)).decode("ascii")


@pytest.mark.parametrize("key", [0, 1, 2, 999_999, 1_000_000, -1, KEY_MIN, KEY_MAX])
def test_cursor_round_trips_every_64_bit_key(key: int) -> None:
    cursor = encode_cursor(key)

    assert decode_cursor(cursor) == key
    assert re.fullmatch(r"[A-Za-z0-9_-]+", cursor)
    assert len(cursor) == CURSOR_LENGTH


def test_cursor_differs_by_key_and_hides_it() -> None:
    cursors = {encode_cursor(key) for key in range(1000)}

    assert len(cursors) == 1000
    assert "1000" not in encode_cursor(1000)


@pytest.mark.parametrize(
    "key",
    [pytest.param(KEY_MAX + 1, id="too-big"), pytest.param(KEY_MIN - 1, id="too-small"), pytest.param("7", id="text")],
)
def test_cursor_encode_rejects_keys_that_are_not_64_bit_integers(key: object) -> None:
    with pytest.raises(TypeError, match="64-bit integer key"):
        encode_cursor(key)


GOOD = encode_cursor(123_456)


@pytest.mark.parametrize(
    ("cursor", "reason"),
    [
        pytest.param("", "malformed cursor", id="empty"),
        pytest.param(GOOD[:-1], "malformed cursor", id="truncated"),
        pytest.param(GOOD + "A", "malformed cursor", id="extended"),
        pytest.param(GOOD[:-2] + "==", "malformed cursor", id="padding"),
        pytest.param(GOOD.replace(GOOD[5], "+", 1), "malformed cursor", id="standard-base64-char"),
        pytest.param(GOOD[:-1] + "é", "malformed cursor", id="non-ascii"),
        pytest.param(" " + GOOD[1:], "malformed cursor", id="space"),
        pytest.param("' OR 1=1 --xxxxxxxxxx", "malformed cursor", id="sql"),
        pytest.param(_flip_char(GOOD, 5), "cursor checksum mismatch", id="key-edited"),
        pytest.param(_flip_char(GOOD, 19), "cursor checksum mismatch", id="checksum-edited"),
        pytest.param(_with_version(GOOD, 2), "unsupported cursor version", id="other-version"),
        pytest.param(_with_version(GOOD, 0), "unsupported cursor version", id="version-zero"),
    ],
)
def test_cursor_decode_rejects_anything_not_encoded_by_us(cursor: str, reason: str) -> None:
    with pytest.raises(CursorError, match=f"^{reason}$"):
        decode_cursor(cursor)


def test_cursor_decode_rejects_every_single_character_edit() -> None:
    # GIVEN every one-character change of a valid cursor, WHEN decoded, THEN none is accepted.
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    accepted = []
    for index in range(len(GOOD)):
        for char in alphabet:
            edited = GOOD[:index] + char + GOOD[index + 1 :]
            if edited == GOOD:
                continue
            with contextlib.suppress(CursorError):
                accepted.append((edited, decode_cursor(edited)))

    assert accepted == []
