"""Conditional GET on an S3 snapshot: the tag follows the snapshot's content, and a 304 reads nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from flask import Flask

from app.adapter import make_handler
from app.storage import DATABASE_KEY
from tests.support.engines import StatementCounter, engine_of
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v1_event, response_headers
from tests.support.snapshots import FakeClock, MakeSnapshotApp

REFRESH_SECONDS = 60


def test_snapshot_etag_follows_the_snapshot_and_304_reads_nothing(
    put_snapshot: Callable[..., dict[str, Any]], make_snapshot_app: MakeSnapshotApp, clock: FakeClock
) -> None:
    put_snapshot(["Sam"])
    application: Flask = make_snapshot_app(db_snapshot_refresh_seconds=REFRESH_SECONDS)
    handler = make_handler(application)
    first = handler(make_v1_event(), FakeContext())
    etag = response_headers(first)["etag"]
    counter = StatementCounter(engine_of(application))

    unchanged = handler(make_v1_event(headers={"If-None-Match": etag}), FakeContext())
    counter.close()
    put_snapshot(["Sam", "Ann"])
    clock.advance(REFRESH_SECONDS)
    changed = handler(make_v1_event(headers={"If-None-Match": etag}), FakeContext())

    assert application.extensions[DATABASE_KEY].content_id.startswith("s3:")
    assert (first["statusCode"], first["body"]) == (200, "Sam")
    assert (unchanged["statusCode"], unchanged["body"]) == (304, "")
    assert counter.count == 0
    assert (changed["statusCode"], changed["body"]) == (200, "Sam,Ann")
    assert response_headers(changed)["etag"] != etag
