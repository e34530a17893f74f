"""GET /users on 1,000,000 users: whole walks through handler.handler, sizes, and bounded reads.

The table is generated once for the module (about a second); a whole walk takes about a
second, so the walks here cover both response limits and both formats on a few shapes,
and test_users_paging.py covers every shape on smaller tables.
"""

from __future__ import annotations

import re
import tracemalloc
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import Engine, event

from app.adapter import LambdaHandler
from app.web.cursor import encode_cursor
from app.web.users import FETCH_CHUNK_ROWS
from tests.support.engines import queue_pool
from tests.support.gateway import DEPLOYMENTS, Deployment, Fetched, walk
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event
from tests.support.tables import build_users_db

pytestmark = pytest.mark.slow  # a 1M-user table, walked page by page

MILLION = 1_000_000

ServeDb = Callable[..., LambdaHandler]


def _deployment(deployment_id: str) -> Deployment:
    deployment = next(param.values[0] for param in DEPLOYMENTS if param.id == deployment_id)
    assert isinstance(deployment, Deployment)
    return deployment


@pytest.fixture(scope="module")
def million_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    path = tmp_path_factory.mktemp("million") / "users.db"
    return path, build_users_db(path, MILLION)


def _union(pages: list[Fetched]) -> list[str]:
    return [name for page in pages for name in page.names()]


@pytest.mark.parametrize(
    ("deployment_id", "headers"),
    [
        pytest.param("apigw-v1-multi-value", None, id="apigw-v1-stage-text"),
        pytest.param("apigw-v2", {"accept": "application/json"}, id="apigw-v2-json"),
        pytest.param("function-url", {"accept": "text/plain"}, id="function-url-text"),
        pytest.param("alb", {"accept": "application/json"}, id="alb-json"),
        pytest.param("alb-multi-value", None, id="alb-multi-value-text"),
    ],
)
def test_users_million_walk_is_exact_and_under_the_platform_limit(
    deployment_id: str,
    headers: dict[str, str] | None,
    million_db: tuple[Path, list[str]],
    serve_db: ServeDb,
) -> None:
    # GIVEN a client of this deployment and 1M users (~11 MB as text, ~16 MB as escaped JSON)
    path, names = million_db
    deployment = _deployment(deployment_id)

    # WHEN it walks /users without a limit, following next links
    pages = walk(serve_db(path), deployment, headers=headers)

    # THEN every name arrives once, in order, in pages just under the platform's limit
    assert _union(pages) == names
    sizes = [max(page.wire_sizes) for page in pages]
    assert len(pages) >= 2
    assert max(sizes) <= deployment.response_limit
    assert min(sizes[:-1]) >= 0.97 * deployment.response_limit  # full pages: few round trips
    assert all(str(page.next_url).startswith(deployment.base_url + "?after=") for page in pages[:-1])


def test_users_million_limit_walk_ends_on_a_full_page_without_link(
    million_db: tuple[Path, list[str]], serve_db: ServeDb
) -> None:
    # GIVEN an HTTP API named stage and limit=100000, which divides the table exactly
    path, names = million_db

    pages = walk(
        serve_db(path, max_page_limit=100_000),
        _deployment("apigw-v2-named-stage"),
        query="?limit=100000&format=json",
    )

    assert _union(pages) == names
    assert [len(page.names()) for page in pages] == [100_000] * 10
    assert pages[-1].next_url is None


@dataclass
class StatementLog:
    """SQL statements an engine ran, with their parameters."""

    statements: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    @property
    def rows_requested(self) -> int:
        return sum(parameters["count"] for _, parameters in self.statements)


@pytest.fixture
def statement_log() -> Iterator[Callable[[Engine], StatementLog]]:
    """Factory: record what an engine executes, until the test ends."""
    listening: list[tuple[Engine, Callable[..., None]]] = []

    def watch(engine: Engine) -> StatementLog:
        log = StatementLog()

        def before_cursor_execute(_conn: Any, _cursor: Any, statement: str, parameters: Any, *_: Any) -> None:
            # pysqlite takes positional parameters, in the statement's order: [after,] count.
            log.statements.append(
                (statement, dict(zip(("after", "count")[-len(parameters) :], parameters, strict=True)))
            )

        event.listen(engine, "before_cursor_execute", before_cursor_execute)
        listening.append((engine, before_cursor_execute))
        return log

    yield watch
    for engine, listener in listening:
        event.remove(engine, "before_cursor_execute", listener)


@pytest.mark.parametrize(
    "query",
    [
        pytest.param({}, id="first-page-by-size"),
        pytest.param({"after": encode_cursor(400_000)}, id="middle-page-by-size"),
        pytest.param({"after": encode_cursor(700_000), "limit": "10000"}, id="middle-page-by-limit"),
        pytest.param({"after": encode_cursor(MILLION - 10), "limit": "10000"}, id="last-page"),
    ],
)
def test_users_million_page_reads_only_the_page_in_keyset_chunks(
    query: dict[str, str],
    million_db: tuple[Path, list[str]],
    serve_db: ServeDb,
    served_engine: Callable[[], Engine],
    statement_log: Callable[[Engine], StatementLog],
) -> None:
    # GIVEN the statements the engine runs are recorded
    path, _ = million_db
    handler = serve_db(path)
    log = statement_log(served_engine())

    # WHEN one page is served
    page = Fetched("https://example.com/users", handler(make_v1_event(query=query or None), FakeContext()))

    # THEN every statement is a keyset chunk of at most FETCH_CHUNK_ROWS rows (SQLite's chunks do
    # not grow; no OFFSET, no unbounded SELECT), and all of them together asked for at most one
    # chunk beyond the page
    names_on_page = len(page.names())
    assert names_on_page > 0
    for statement, parameters in log.statements:
        assert re.fullmatch(r"SELECT id, name FROM users (WHERE id > \? )?ORDER BY id LIMIT \?", statement), statement
        assert parameters["count"] <= FETCH_CHUNK_ROWS
    assert log.rows_requested <= names_on_page + FETCH_CHUNK_ROWS
    assert queue_pool(served_engine()).checkedout() == 0


def test_users_million_limit_page_allocates_for_the_page_not_the_table(
    million_db: tuple[Path, list[str]], serve_db: ServeDb
) -> None:
    path, names = million_db
    handler = serve_db(path)
    event = make_v1_event(query={"after": encode_cursor(500_000), "limit": "1000"})
    handler(event, FakeContext())  # warm: statement caches, pool

    tracemalloc.start()
    try:
        response = handler(event, FakeContext())
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert response["body"].split(",")[:2] == names[500_000:500_002]
    # The whole table's names alone take ~60 MB as Python strings; one page of 1,000 a few hundred KB.
    assert peak < 2_000_000
