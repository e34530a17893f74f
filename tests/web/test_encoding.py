"""Compression: Accept-Encoding negotiation, gzip pages on every event kind, budgets counted in base64."""

from __future__ import annotations

import base64
import gzip
import json
import random
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient

from app.adapter import LambdaHandler
from app.config import Settings
from app.types import NameFormat
from app.web.encoding import GZIP, GZIP_ONLY, IDENTITY, MIN_COMPRESSED_SIZE, ContentCoding, GzipMeter, coding_for
from app.web.users import FETCH_CHUNK_ROWS, JSON, RESPONSE_RESERVE, TEXT, Page, SmallTextFirst, collect_page
from tests.support.gateway import DEPLOYMENTS, Deployment, walk
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import HTTP_EVENT_BUILDERS, response_headers
from tests.support.names import TRICKY_NAMES, parse_text_body
from tests.support.tables import SEED_NAMES, FakeTable, MakeUsersDb

# Over MIN_COMPRESSED_SIZE as text or JSON, with every name that breaks naive formats.
NAMES = [f"user{i}" for i in range(1, 3001)] + TRICKY_NAMES
GZIP_HEADERS = {"Accept-Encoding": "gzip, deflate, br"}


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, IDENTITY),  # no preference: not encoded (curl without --compressed)
        ("", IDENTITY),  # RFC 9110: an empty value wants no coding
        ("gzip", GZIP),
        ("GZip", GZIP),
        ("x-gzip", GZIP),
        ("gzip, deflate, br, zstd", GZIP),
        ("*", GZIP),
        ("gzip;q=0", IDENTITY),
        ("br, deflate", IDENTITY),
        ("gzip;q=0.5, identity", IDENTITY),  # identity named and preferred
        ("gzip;q=0.5", GZIP),  # identity unnamed: acceptable, but last
        ("gzip;q=0.5, identity;q=0.5", GZIP),  # a tie goes to the smaller body
        ("*;q=0.5, gzip;q=0", IDENTITY),  # the named entry wins over *
        ("*;q=0, identity", IDENTITY),
        ("*;q=0, gzip", GZIP_ONLY),
        ("gzip, identity;q=0", GZIP_ONLY),
        ("gzip;q=banana", IDENTITY),  # an unparsable member is ignored
    ],
)
def test_encoding_negotiation_follows_rfc_9110(header: str | None, expected: ContentCoding) -> None:
    assert coding_for(header) == expected


@pytest.mark.parametrize("header", ["identity;q=0", "*;q=0", "gzip;q=0, identity;q=0", "br, *;q=0"])
def test_encoding_refusing_gzip_and_identity_is_406(header: str, client: FlaskClient) -> None:
    response = client.get("/users", headers={"Accept-Encoding": header})

    assert coding_for(header) is None
    assert response.status_code == 406
    assert response.headers["Vary"] == "Accept, Accept-Encoding"
    assert response.mimetype == "application/json"
    assert response.get_json()["error"] == "not_acceptable"
    assert "Accept-Encoding" in response.get_json()["message"]


def _decoded(response: dict[str, Any]) -> str:
    assert response["isBase64Encoded"] is True
    data = base64.b64decode(response["body"], validate=True)
    assert int(response_headers(response)["content-length"]) == len(data)
    return gzip.decompress(data).decode("utf-8")


@pytest.fixture
def names_handler(make_users_db: MakeUsersDb, serve_db: Callable[..., LambdaHandler]) -> LambdaHandler:
    return serve_db(make_users_db(NAMES))


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
@pytest.mark.parametrize("format_", ["text", "json"])
def test_encoding_gzip_body_holds_exactly_the_names_on_every_event_kind(
    make_event: Callable[..., dict[str, Any]], format_: str, names_handler: LambdaHandler
) -> None:
    query = {"format": format_}
    plain = names_handler(make_event(query=query), FakeContext())
    response = names_handler(make_event(query=query, headers=GZIP_HEADERS), FakeContext())
    head = names_handler(make_event(method="HEAD", query=query, headers=GZIP_HEADERS), FakeContext())

    headers = response_headers(response)
    assert response["statusCode"] == head["statusCode"] == 200
    assert headers["content-encoding"] == "gzip"
    assert headers["vary"] == "Accept, Accept-Encoding"
    assert headers["etag"] != response_headers(plain)["etag"]  # other bytes, another strong tag
    text = _decoded(response)
    assert text == plain["body"]  # what a client gets once decoded: the uncompressed body
    names = parse_text_body(text) if format_ == "text" else json.loads(text)["users"]
    assert names == NAMES
    assert len(response["body"]) < len(plain["body"]) / 2  # base64 included
    # HEAD: the same headers (Content-Length of the gzip body included), no body.
    assert response_headers(head) == headers
    assert head["body"] == ""


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
@pytest.mark.parametrize("method", ["GET", "HEAD"])
def test_encoding_gzip_tag_gets_304_with_the_same_vary(
    make_event: Callable[..., dict[str, Any]], method: str, names_handler: LambdaHandler
) -> None:
    etag = response_headers(names_handler(make_event(method=method, headers=GZIP_HEADERS), FakeContext()))["etag"]

    again = names_handler(make_event(method=method, headers={**GZIP_HEADERS, "If-None-Match": etag}), FakeContext())
    # The gzip tag does not name the uncompressed body.
    plain = names_handler(make_event(method=method, headers={"If-None-Match": etag}), FakeContext())

    assert again["statusCode"] == 304
    assert again["body"] == ""
    assert response_headers(again)["etag"] == etag
    assert response_headers(again)["vary"] == "Accept, Accept-Encoding"
    assert "content-encoding" not in response_headers(again)
    assert plain["statusCode"] == 200
    assert "content-encoding" not in response_headers(plain)


def test_encoding_small_body_is_sent_as_is_unless_identity_is_refused(client: FlaskClient) -> None:
    small = client.get("/users", headers={"Accept-Encoding": "gzip"})
    forced = client.get("/users", headers={"Accept-Encoding": "gzip, identity;q=0"})

    assert len(SEED_NAMES) < MIN_COMPRESSED_SIZE
    assert small.get_data(as_text=True) == SEED_NAMES
    assert "Content-Encoding" not in small.headers
    assert small.headers["Vary"] == "Accept, Accept-Encoding"
    assert forced.headers["Content-Encoding"] == "gzip"
    assert gzip.decompress(forced.get_data()).decode() == SEED_NAMES
    assert forced.headers["ETag"] != small.headers["ETag"]


def test_encoding_mutable_database_tags_the_gzip_bytes(
    make_users_db: MakeUsersDb, sqlite_settings: Callable[[Path], Settings], make_app: Callable[[Settings], Flask]
) -> None:
    path = make_users_db(NAMES)
    client = make_app(sqlite_settings(path)).test_client()

    compressed = client.get("/users", headers=GZIP_HEADERS)
    plain = client.get("/users")
    again = client.get("/users", headers={**GZIP_HEADERS, "If-None-Match": compressed.headers["ETag"]})
    with sqlite3.connect(path) as connection:
        connection.execute("INSERT INTO users (name) VALUES ('Cid')")
    connection.close()
    changed = client.get("/users", headers={**GZIP_HEADERS, "If-None-Match": compressed.headers["ETag"]})

    assert compressed.headers["Content-Encoding"] == "gzip"
    assert compressed.headers["ETag"] != plain.headers["ETag"]
    assert again.status_code == 304
    assert again.headers["Vary"] == "Accept, Accept-Encoding"
    assert changed.status_code == 200
    assert parse_text_body(gzip.decompress(changed.get_data()).decode()) == [*NAMES, "Cid"]


@pytest.mark.parametrize("accept_encoding", ["gzip", "gzip, identity;q=0"])
def test_encoding_small_page_ending_on_a_chunk_boundary_loses_no_name(
    accept_encoding: str,
    make_users_db: MakeUsersDb,
    sqlite_settings: Callable[[Path], Settings],
    make_app: Callable[[Settings], Flask],
) -> None:
    # GIVEN exactly one chunk of one-letter names: under MIN_COMPRESSED_SIZE as text, and the
    # read after the full chunk finds no rows
    names = [chr(ord("a") + number % 26) for number in range(FETCH_CHUNK_ROWS)]
    client = make_app(sqlite_settings(make_users_db(names))).test_client()

    response = client.get("/users", headers={"Accept-Encoding": accept_encoding})

    # THEN the body holds every name once, and nothing after the last (no empty name)
    body = response.get_data()
    text = gzip.decompress(body).decode() if response.headers.get("Content-Encoding") == "gzip" else body.decode()
    assert parse_text_body(text) == names


# --- budgets ----------------------------------------------------------------------------


def _random_names(count: int, seed: int) -> list[str]:
    """Names that compress poorly (random letters, some non-ASCII and tricky ones): the hard case."""
    rng = random.Random(seed)
    alphabet = "abcdefghijklmnopqrstuvwxyzäöüßéèñ李雷🚀 ,\"'\\\n"
    return [
        TRICKY_NAMES[i % len(TRICKY_NAMES)] if i % 101 == 0 else "".join(rng.choices(alphabet, k=rng.randint(1, 24)))
        for i in range(count)
    ]


def _gzip_walk(table: FakeTable, name_format: NameFormat, budget: int) -> list[tuple[Page, bytes]]:
    pages = []
    after = None
    while True:
        meter = GzipMeter(budget, name_format, GZIP_ONLY)  # small pages too: every body is gzip
        page = collect_page(table.fetch, after=after, limit=None, name_format=name_format, budget=budget, meter=meter)
        body = meter.finish(None if page.next_after is None else "C" * 20)
        assert body is not None
        pages.append((page, body))
        if page.next_after is None:
            return pages
        after = page.next_after


@pytest.mark.slow
@pytest.mark.parametrize("name_format", [TEXT, JSON], ids=["text", "json"])
@pytest.mark.parametrize("budget", [1_500, 20_000, 300_000])
def test_encoding_gzip_pages_fill_the_base64_budget_and_lose_nothing(name_format: NameFormat, budget: int) -> None:
    names = _random_names(40_000, seed=budget)
    table = FakeTable([(key, name) for key, name in enumerate(names, start=1)])

    pages = _gzip_walk(table, name_format, budget)

    decoded = [gzip.decompress(body).decode("utf-8") for _, body in pages]
    if name_format is TEXT:
        got = [name for text in decoded for name in parse_text_body(text)]
    else:
        got = [name for text in decoded for name in json.loads(text)["users"]]
    assert got == names
    sizes = [len(base64.b64encode(body)) for _, body in pages]
    assert max(sizes) <= budget
    assert len(pages) >= 3
    # Full: only the framing reserve and part of one name are left over.
    assert min(sizes[:-1]) >= budget - 400


def _deployment(deployment_id: str) -> Deployment:
    deployment = next(param.values[0] for param in DEPLOYMENTS if param.id == deployment_id)
    assert isinstance(deployment, Deployment)
    return deployment


@pytest.fixture(scope="module")
def hex_names_db(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """900,000 random 12-digit hex names: they compress ~1.8×, so a 6 MB gzip page holds ~600k of them."""
    path = tmp_path_factory.mktemp("hex") / "users.db"
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.execute(
            "WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < 900000) "
            "INSERT INTO users (id, name) SELECT i, lower(hex(randomblob(6))) FROM seq"
        )
        connection.commit()
        names = [name for (name,) in connection.execute("SELECT name FROM users ORDER BY id")]
    finally:
        connection.close()
    return path, names


@pytest.mark.slow
@pytest.mark.parametrize(
    ("deployment_id", "headers"),
    [
        pytest.param("apigw-v1-multi-value", {"accept-encoding": "gzip"}, id="apigw-v1-text"),
        pytest.param("alb", {"accept": "application/json", "accept-encoding": "gzip"}, id="alb-json"),
    ],
)
def test_encoding_gzip_walk_pages_stay_under_the_platform_limit(
    deployment_id: str,
    headers: dict[str, str],
    hex_names_db: tuple[Path, list[str]],
    serve_db: Callable[..., LambdaHandler],
) -> None:
    # GIVEN names that compress poorly, and a client that accepts gzip
    path, names = hex_names_db
    deployment = _deployment(deployment_id)

    # WHEN it walks /users, decoding each page
    pages = walk(serve_db(path), deployment, headers=headers)

    # THEN it gets every name once, in pages whose proxy response JSON is just under the limit
    assert [name for page in pages for name in page.names()] == names
    assert all(page.headers["content-encoding"] == "gzip" for page in pages)
    sizes = [max(page.wire_sizes) for page in pages]
    assert len(pages) >= 2
    assert max(sizes) <= deployment.response_limit
    assert min(sizes[:-1]) >= deployment.response_limit - RESPONSE_RESERVE - 1_000
    # More names per page than the uncompressed limit could hold (13 escaped bytes a name).
    assert len(pages[0].names()) > deployment.response_limit / 13


@pytest.mark.parametrize("budget", [1_000_000, 60_000], ids=["whole-table", "full-page"])
def test_encoding_gzip_page_is_read_in_full_chunks(budget: int) -> None:
    # GIVEN 40,000 names that compress well, read in SQLite's fixed chunks
    table = FakeTable([(key, f"user{key}") for key in range(1, 40_001)])

    page = collect_page(
        table.fetch, after=None, limit=None, name_format=TEXT, budget=budget, grow=False, meter=GzipMeter(budget, TEXT)
    )

    # THEN chunks are sized by the compressed room left, not cut short by the gzip header or
    # an early guess of the ratio: about one query per FETCH_CHUNK_ROWS names
    assert page.size > 10_000
    assert len(table.calls) <= page.size // FETCH_CHUNK_ROWS + 4


@pytest.mark.parametrize("name_format", [TEXT, JSON], ids=["text", "json"])
def test_encoding_small_text_first_compresses_only_past_the_minimum(name_format: NameFormat) -> None:
    # GIVEN a small table, and one that outgrows MIN_COMPRESSED_SIZE within its first chunk
    small = FakeTable([(1, "Ann"), (2, "Ben")])
    large = FakeTable([(key, f"user{key}") for key in range(1, 3_001)])
    budget = 20_000

    small_meter = SmallTextFirst(budget, name_format, GZIP)
    small_page = collect_page(
        small.fetch, after=None, limit=None, name_format=name_format, budget=budget, meter=small_meter
    )
    large_meter = SmallTextFirst(budget, name_format, GZIP)
    large_page = collect_page(
        large.fetch, after=None, limit=None, name_format=name_format, budget=budget, meter=large_meter
    )
    next_cursor = None if large_page.next_after is None else "C" * 20
    compressed = large_meter.finish(next_cursor)

    # THEN the small page never made a compressor and is sent as text; the large one was handed
    # to a GzipMeter that kept every name taken before the hand-over, within the base64 budget
    assert small_page.next_after is None and len(small_page.pieces) == 1
    assert small_meter.gzip is None
    assert small_meter.finish(None) is None
    assert large_meter.gzip is not None
    assert compressed is not None
    assert len(base64.b64encode(compressed)) <= budget
    assert gzip.decompress(compressed).decode() == name_format.body(large_page.pieces, next_cursor)
    assert large_page.size > 1_000
