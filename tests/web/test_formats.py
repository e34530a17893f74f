"""Text and JSON page bodies: plain names as the seed wrote them, tricky ones round-trip exactly."""

from __future__ import annotations

import json

import pytest

from app.web.users import FORMATS, JSON, TEXT, escaped_size
from tests.support.names import TRICKY_NAMES, parse_text_body


def test_text_join_of_plain_names_is_the_seed_contract() -> None:
    names = ["Alice", "Bob", "Zoë", "李雷", "Émile 🚀", " padded ", "back\\slash", "tab\there"]

    assert TEXT.join(names) == ",".join(names)
    assert TEXT.body([TEXT.join(names)], None) == ",".join(names)


@pytest.mark.parametrize(
    ("name", "encoded"),
    [
        pytest.param("a,b", '"a,b"', id="comma"),
        pytest.param('say "hi"', '"say ""hi"""', id="quotes"),
        pytest.param("two\nlines", '"two\nlines"', id="lf"),
        pytest.param("cr\r", '"cr\r"', id="cr"),
        pytest.param("", '""', id="empty"),
        pytest.param("plain", "plain", id="plain"),
        pytest.param("it's", "it's", id="apostrophe"),
    ],
)
def test_text_encode_quotes_only_names_that_need_it(name: str, encoded: str) -> None:
    assert TEXT.encode(name) == encoded


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_text_join_matches_encoding_name_by_name(name: str) -> None:
    names = ["before", name, "after"]

    assert TEXT.join(names) == ",".join(TEXT.encode(n) for n in names)


def test_text_body_parses_back_with_a_csv_reader() -> None:
    body = TEXT.body([TEXT.join(TRICKY_NAMES[:10]), TEXT.join(TRICKY_NAMES[10:])], None)

    assert parse_text_body(body) == TRICKY_NAMES


@pytest.mark.parametrize(
    ("names", "body"),
    [
        pytest.param([], "", id="no-names"),
        pytest.param([""], '""', id="one-empty-name"),
        pytest.param(["", ""], '"",""', id="two-empty-names"),
    ],
)
def test_text_body_tells_no_names_from_empty_names(names: list[str], body: str) -> None:
    pieces = [TEXT.join(names)] if names else []

    assert TEXT.body(pieces, None) == body
    assert parse_text_body(body) == names


def test_json_body_round_trips_tricky_names_and_carries_next() -> None:
    body = JSON.body([JSON.join(TRICKY_NAMES[:3]), JSON.join(TRICKY_NAMES[3:])], "CURSOR")

    assert json.loads(body) == {"users": TRICKY_NAMES, "next": "CURSOR"}


def test_json_body_of_last_page_has_null_next() -> None:
    assert JSON.body([], None) == '{"users":[],"next":null}'


@pytest.mark.parametrize("name", TRICKY_NAMES)
def test_json_join_matches_encoding_name_by_name(name: str) -> None:
    names = ["before", name, "after"]

    assert JSON.join(names) == ",".join(JSON.encode(n) for n in names)


@pytest.mark.parametrize(
    ("text", "size"),
    [
        pytest.param("abc", 3, id="ascii"),
        pytest.param('"\\', 4, id="quote-backslash"),
        pytest.param("\n\x01", 8, id="control"),
        pytest.param("é", 6, id="bmp"),
        pytest.param("🚀", 12, id="astral"),
    ],
)
def test_escaped_size_counts_bytes_inside_the_proxy_json(text: str, size: int) -> None:
    assert escaped_size(text) == size
    # The runtime may also serialise without ensure_ascii: never larger.
    assert len(json.dumps(text, ensure_ascii=False).encode("utf-8")) - 2 <= size


def test_escaped_size_adds_up_over_concatenation() -> None:
    pieces = [TEXT.join(TRICKY_NAMES), JSON.join(TRICKY_NAMES), "plain"]

    assert escaped_size("".join(pieces)) == sum(escaped_size(piece) for piece in pieces)


def test_json_framing_size_covers_the_longest_next() -> None:
    assert JSON.framing_size == escaped_size(JSON.body([], "A" * 20))
    assert TEXT.framing_size == 0


def test_formats_are_named_as_the_format_parameter_takes_them() -> None:
    assert FORMATS == {"text": TEXT, "json": JSON}
    assert (TEXT.mimetype, JSON.mimetype) == ("text/plain", "application/json")
