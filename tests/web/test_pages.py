"""collect_page over an in-memory table, and parse_page_query: counts, bytes, look-ahead, errors."""

from __future__ import annotations

import json

import pytest
from werkzeug.datastructures import MultiDict

from app.types import NameFormat
from app.web.cursor import encode_cursor
from app.web.errors import ApiError
from app.web.users import (
    FETCH_CHUNK_ROWS,
    JSON,
    MAX_CHUNK_ROWS,
    TEXT,
    Page,
    PageQuery,
    collect_page,
    escaped_size,
    parse_page_query,
)
from tests.support.names import TRICKY_NAMES, parse_text_body
from tests.support.tables import FakeTable


def _table(names: list[str], *, first_key: int = 1) -> FakeTable:
    return FakeTable([(first_key + i, name) for i, name in enumerate(names)])


def _names(page: Page, name_format: NameFormat) -> list[str]:
    body = name_format.body(page.pieces, None)
    if name_format is TEXT:
        return parse_text_body(body)
    names: list[str] = json.loads(body)["users"]
    return names


def _walk(table: FakeTable, name_format: NameFormat, *, limit: int | None, budget: int) -> list[Page]:
    pages = []
    after = None
    while True:
        page = collect_page(table.fetch, after=after, limit=limit, name_format=name_format, budget=budget)
        pages.append(page)
        if page.next_after is None:
            return pages
        after = page.next_after


def test_collect_page_small_table_is_one_page_one_query() -> None:
    table = _table(["Alice", "Bob"])

    page = collect_page(table.fetch, after=None, limit=None, name_format=TEXT, budget=1000)

    assert (page.pieces, page.size, page.next_after) == (["Alice,Bob"], 2, None)
    assert table.calls == [(None, FETCH_CHUNK_ROWS)]


def test_collect_page_empty_table_is_empty_last_page() -> None:
    page = collect_page(_table([]).fetch, after=None, limit=None, name_format=TEXT, budget=1000)

    assert (page.pieces, page.size, page.next_after) == ([], 0, None)


@pytest.mark.parametrize("name_format", [TEXT, JSON], ids=["text", "json"])
@pytest.mark.parametrize("limit", [1, 2, 3, 7, FETCH_CHUNK_ROWS - 1, FETCH_CHUNK_ROWS, FETCH_CHUNK_ROWS + 1])
def test_collect_page_limit_walk_returns_every_name_once(limit: int, name_format: NameFormat) -> None:
    names = [f"n{i}" for i in range(2 * FETCH_CHUNK_ROWS + 1)] + TRICKY_NAMES
    table = _table(names, first_key=-5)

    pages = _walk(table, name_format, limit=limit, budget=10**9)

    assert [name for page in pages for name in _names(page, name_format)] == names
    assert all(page.size == limit for page in pages[:-1])
    assert 1 <= pages[-1].size <= limit  # the look-ahead spares an empty last page


def test_collect_page_limit_that_divides_the_table_has_no_empty_last_page() -> None:
    table = _table([f"n{i}" for i in range(30)])

    pages = _walk(table, TEXT, limit=10, budget=10**9)

    assert [page.size for page in pages] == [10, 10, 10]
    assert pages[-1].next_after is None


@pytest.mark.parametrize("name_format", [TEXT, JSON], ids=["text", "json"])
@pytest.mark.parametrize("budget", [200, 1_000, 4_321])
def test_collect_page_budget_walk_stays_under_budget_and_loses_nothing(budget: int, name_format: NameFormat) -> None:
    names = (TRICKY_NAMES + [f"user{i}" for i in range(40)]) * 30
    table = _table(names)

    pages = _walk(table, name_format, limit=None, budget=budget)

    assert [name for page in pages for name in _names(page, name_format)] == names
    bodies = [name_format.body(page.pieces, "A" * 20) for page in pages]
    assert max(escaped_size(body) for body in bodies) <= budget
    # Pages are full, not cut early: the next name would not have fit.
    next_names = [names[sum(p.size for p in pages[: i + 1])] for i in range(len(pages) - 1)]
    for body, name in zip(bodies[:-1], next_names, strict=True):
        assert escaped_size(body) + 1 + escaped_size(name_format.encode(name)) > budget


def test_collect_page_budget_counts_escaped_bytes_not_characters() -> None:
    # GIVEN names that escape to 12 bytes per character, WHEN paged with a 1,000-byte budget,
    # THEN pages hold what fits escaped (~12 names of 6 emoji), not 1,000 characters' worth.
    names = ["🚀" * 6] * 100
    pages = _walk(_table(names), TEXT, limit=None, budget=1_000)

    assert all(escaped_size(TEXT.body(page.pieces, None)) <= 1_000 for page in pages)
    assert pages[0].size == 13  # 13 * 72 + 12 commas = 948; one more would be 1,021


def test_collect_page_exact_fit_is_last_page_without_next() -> None:
    names = ["abcd"] * 10  # 10 * 4 + 9 commas = 49 bytes
    page = collect_page(_table(names).fetch, after=None, limit=None, name_format=TEXT, budget=49)

    assert (page.size, page.next_after) == (10, None)


def test_collect_page_one_byte_short_cuts_before_the_last_name() -> None:
    names = ["abcd"] * 10
    page = collect_page(_table(names).fetch, after=None, limit=None, name_format=TEXT, budget=48)

    assert (page.size, page.next_after) == (9, 9)


def test_collect_page_name_larger_than_budget_is_500_not_an_endless_walk() -> None:
    table = _table(["ok", "x" * 500, "after"])
    first = collect_page(table.fetch, after=None, limit=None, name_format=TEXT, budget=100)

    with pytest.raises(ApiError) as raised:
        collect_page(table.fetch, after=first.next_after, limit=None, name_format=TEXT, budget=100)

    assert (first.size, first.next_after) == (1, 1)
    assert (raised.value.status, raised.value.error) == (500, "name_too_large")


@pytest.mark.parametrize("limit", [None, 10, 10_000])
def test_collect_page_reads_at_most_one_chunk_past_the_page(limit: int | None) -> None:
    table = _table([f"user{i:05d}" for i in range(20_000)])

    page = collect_page(table.fetch, after=100, limit=limit, name_format=TEXT, budget=50_000)

    # Chunks grow from FETCH_CHUNK_ROWS, and the last is sized by the room left: it asks for
    # little more than what fits.
    counts = [count for _, count in table.calls]
    assert counts[0] <= FETCH_CHUNK_ROWS
    assert all(count <= MAX_CHUNK_ROWS for count in counts)
    assert table.rows_fetched <= page.size + FETCH_CHUNK_ROWS
    assert [after for after, _ in table.calls][0] == 100


def test_parse_page_query_without_parameters() -> None:
    assert parse_page_query(MultiDict(), 100) == PageQuery()


def test_parse_page_query_reads_all_parameters() -> None:
    args = MultiDict({"after": encode_cursor(42), "limit": "100", "format": "json"})

    assert parse_page_query(args, 100) == PageQuery(after=42, limit=100, format=JSON)


# Leading zeros are read the same way however many there are (issue 18: "00002" was accepted,
# "000002" refused, against a maximum of 10000).
@pytest.mark.parametrize(("raw", "limit"), [("00002", 2), ("000002", 2), ("0" * 500 + "7", 7), ("0100", 100)])
def test_parse_page_query_allows_any_number_of_leading_zeros(raw: str, limit: int) -> None:
    assert parse_page_query(MultiDict({"limit": raw}), 100).limit == limit
    assert parse_page_query(MultiDict({"limit": raw}), 10_000).limit == limit


LIMIT_MESSAGE = "limit must be a whole number from 1 to 100."
CURSOR_MESSAGE = "after must be a cursor taken unchanged from a next link or a JSON 'next'."


@pytest.mark.parametrize(
    ("args", "error", "message"),
    [
        pytest.param({"limit": "0"}, "invalid_limit", LIMIT_MESSAGE, id="limit-zero"),
        pytest.param({"limit": "-1"}, "invalid_limit", LIMIT_MESSAGE, id="limit-negative"),
        pytest.param({"limit": "101"}, "invalid_limit", LIMIT_MESSAGE, id="limit-over-max"),
        pytest.param({"limit": "000101"}, "invalid_limit", LIMIT_MESSAGE, id="limit-over-max-zero-padded"),
        pytest.param({"limit": "000"}, "invalid_limit", LIMIT_MESSAGE, id="limit-zeros"),
        pytest.param({"limit": "9" * 5000}, "invalid_limit", LIMIT_MESSAGE, id="limit-huge"),
        pytest.param({"limit": "ten"}, "invalid_limit", LIMIT_MESSAGE, id="limit-word"),
        pytest.param({"limit": ""}, "invalid_limit", LIMIT_MESSAGE, id="limit-empty"),
        pytest.param({"limit": "1.5"}, "invalid_limit", LIMIT_MESSAGE, id="limit-decimal"),
        pytest.param({"limit": "1e2"}, "invalid_limit", LIMIT_MESSAGE, id="limit-exponent"),
        pytest.param({"limit": " 5"}, "invalid_limit", LIMIT_MESSAGE, id="limit-space"),
        pytest.param({"limit": "+5"}, "invalid_limit", LIMIT_MESSAGE, id="limit-plus"),
        pytest.param({"limit": "1_0"}, "invalid_limit", LIMIT_MESSAGE, id="limit-underscore"),
        pytest.param({"limit": "٣"}, "invalid_limit", LIMIT_MESSAGE, id="limit-arabic-digit"),
        pytest.param({"limit": "5; DROP TABLE users"}, "invalid_limit", LIMIT_MESSAGE, id="limit-sql"),
        pytest.param({"after": ""}, "invalid_cursor", CURSOR_MESSAGE, id="after-empty"),
        pytest.param({"after": "42"}, "invalid_cursor", CURSOR_MESSAGE, id="after-raw-key"),
        pytest.param({"after": "0 OR 1=1"}, "invalid_cursor", CURSOR_MESSAGE, id="after-sql"),
        pytest.param({"format": "xml"}, "invalid_format", "format must be 'text' or 'json'.", id="format-xml"),
        pytest.param({"format": "JSON"}, "invalid_format", "format must be 'text' or 'json'.", id="format-case"),
    ],
)
def test_parse_page_query_rejects_bad_values_with_400(args: dict[str, str], error: str, message: str) -> None:
    with pytest.raises(ApiError) as raised:
        parse_page_query(MultiDict(args), 100)

    assert (raised.value.status, raised.value.error, raised.value.message) == (400, error, message)


@pytest.mark.parametrize(
    "args",
    [
        pytest.param([("_", "1732812345678")], id="cache-buster"),
        pytest.param([("utm_source", "mail"), ("fbclid", "x")], id="tracking"),
        pytest.param([("foo", "bar"), ("foo", "baz")], id="repeated-unknown"),
        pytest.param([("name' OR '1'='1", "x")], id="unknown-sql"),
    ],
)
def test_parse_page_query_ignores_unknown_parameters(args: list[tuple[str, str]]) -> None:
    assert parse_page_query(MultiDict([*args, ("limit", "7")]), 100) == PageQuery(limit=7)


def test_parse_page_query_rejects_repeated_parameter() -> None:
    with pytest.raises(ApiError) as raised:
        parse_page_query(MultiDict([("limit", "1"), ("limit", "2")]), 100)

    assert raised.value.message == "Query parameter 'limit' is given more than once."


@pytest.mark.parametrize(("grow", "reads"), [(True, 6), (False, 61)])
def test_collect_page_chunks_double_only_when_reads_cross_a_network(grow: bool, reads: int) -> None:
    # 30,000 rows: 500, 1,000, ..., 16,000 (the 6th read comes back short: the table ends); in
    # process (SQLite) every read is FETCH_CHUNK_ROWS, and the 61st finds nothing.
    table = _table([f"user{i:05d}" for i in range(30_000)])

    page = collect_page(table.fetch, after=None, limit=None, name_format=TEXT, budget=10**9, grow=grow)

    counts = [count for _, count in table.calls]
    assert page.size == 30_000 and page.next_after is None
    assert counts[:3] == ([500, 1_000, 2_000] if grow else [500, 500, 500])
    assert len(counts) == reads
