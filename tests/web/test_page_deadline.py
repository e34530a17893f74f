"""A page stops at the invocation's deadline: a shorter page with a `next` link, never a timeout."""

from __future__ import annotations

import contextlib
import sqlite3
import string
import time
from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask

from app.adapter import LambdaHandler
from app.config import Settings
from app.web.users import FETCH_CHUNK_ROWS, TEXT, collect_page
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event, response_headers

ROWS = 1_000_000


@pytest.fixture(scope="module")
def one_character_names(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("deadline") / "users.db"
    with contextlib.closing(sqlite3.connect(path)) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        letters = string.ascii_lowercase
        connection.executemany(
            "INSERT INTO users (id, name) VALUES (?, ?)", ((i, letters[i % 26]) for i in range(1, ROWS + 1))
        )
        connection.commit()
    return path


@pytest.mark.slow
def test_page_with_one_second_left_answers_within_it_with_a_next_link(
    one_character_names: Path, serve_db: Callable[..., LambdaHandler]
) -> None:
    # GIVEN a warm container and 1,000,000 one-character names (2 MB: one page by size)
    handler = serve_db(one_character_names)
    assert handler(make_v1_event(query={"limit": "1"}), FakeContext())["statusCode"] == 200

    # WHEN an invocation with 1 s left asks for them all
    started = time.monotonic()
    response = handler(make_v1_event(), FakeContext(remaining_ms=1_000))
    elapsed = time.monotonic() - started

    # THEN it answers 200 in time, with the names read so far and a link to the rest
    assert response["statusCode"] == 200
    assert elapsed < 1.0
    names = response["body"].split(",")
    assert 0 < len(names) < ROWS
    assert names[:3] == ["b", "c", "d"]
    assert 'rel="next"' in response_headers(response)["link"]


class _SlowTable:
    """FetchRows over `count` rows where each row read advances a fake clock by `seconds_per_row`."""

    def __init__(self, count: int, seconds_per_row: float) -> None:
        self.count = count
        self.seconds_per_row = seconds_per_row
        self.now = 0.0
        self.calls: list[tuple[int | None, int]] = []

    def clock(self) -> float:
        return self.now

    def fetch(self, after: int | None, count: int) -> Sequence[Sequence[Any]]:
        self.calls.append((after, count))
        start = (after or 0) + 1
        rows = [(key, "x") for key in range(start, min(start + count, self.count + 1))]
        self.now += len(rows) * self.seconds_per_row
        return rows


def test_collect_page_starts_no_chunk_that_would_end_after_the_deadline() -> None:
    # GIVEN rows that take 1 ms each and a deadline 2.2 s away
    table = _SlowTable(100_000, 0.001)

    page = collect_page(
        table.fetch, after=None, limit=None, name_format=TEXT, budget=10**9, deadline=2.2, clock=table.clock
    )

    # THEN reading stopped before the deadline, with where to go on from
    assert table.now <= 2.2
    assert page.next_after == page.size == round(table.now / 0.001)
    assert page.size >= 1_500  # it did read on while there was time (500, 1,000, then what fits)


def test_collect_page_reads_the_first_chunk_even_past_the_deadline() -> None:
    table = _SlowTable(100_000, 0.001)

    page = collect_page(
        table.fetch, after=None, limit=None, name_format=TEXT, budget=10**9, deadline=-1.0, clock=table.clock
    )

    assert table.calls == [(None, FETCH_CHUNK_ROWS)]
    assert (page.size, page.next_after) == (FETCH_CHUNK_ROWS, FETCH_CHUNK_ROWS)


@pytest.mark.slow
def test_page_cut_by_the_deadline_has_the_etag_of_its_own_body(
    one_character_names: Path,
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
) -> None:
    # GIVEN the names as the bundled database, whose ETag is known before reading (it names the
    # full body), and that ETag from an invocation with time to spare
    handler = serve_app(make_app(replace(settings, bundled_db_path=one_character_names)))
    full = handler(make_v1_event(), FakeContext())
    assert "link" not in response_headers(full)

    # WHEN an invocation with 1 s left is cut short
    full_etag = response_headers(full)["etag"]
    short = handler(make_v1_event(), FakeContext(remaining_ms=1_000))

    # THEN its tag is of the shorter body it sent, not the full page's
    assert short["statusCode"] == 200
    assert 'rel="next"' in response_headers(short)["link"]
    assert response_headers(short)["etag"] != full_etag

    # AND a client holding the full page still learns, without a read, that it is current
    revalidated = handler(make_v1_event(headers={"If-None-Match": full_etag}), FakeContext(remaining_ms=1_000))
    assert revalidated["statusCode"] == 304


def test_collect_page_says_when_the_deadline_cut_it() -> None:
    table = _SlowTable(100_000, 0.001)
    cut = collect_page(
        table.fetch, after=None, limit=None, name_format=TEXT, budget=10**9, deadline=2.2, clock=table.clock
    )
    whole = collect_page(_SlowTable(1_000, 0.001).fetch, after=None, limit=None, name_format=TEXT, budget=10**9)

    assert cut.cut_by_deadline and cut.next_after is not None
    assert not whole.cut_by_deadline and whole.next_after is None
