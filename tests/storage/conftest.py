"""Fixtures for the AWS integrations: moto, an S3 bucket with snapshots, a fake clock."""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from flask import Flask
from moto import mock_aws

from app.config import S3Location, Settings
from app.storage import aws as aws_module
from tests.support.snapshots import SNAPSHOT_BUCKET, SNAPSHOT_OBJECT_KEY, FakeClock, MakeSnapshotApp
from tests.support.tables import MakeUsersDb


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's `mock_aws` for one test: clients made inside it (never at import) talk to moto."""
    with mock_aws():
        yield


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def s3_client(aws: None) -> Any:
    """A moto S3 client with the snapshot bucket created (us-east-1)."""
    client = boto3.client("s3", region_name="us-east-1")
    client.create_bucket(Bucket=SNAPSHOT_BUCKET)
    return client


@pytest.fixture
def put_snapshot(s3_client: Any, make_users_db: MakeUsersDb) -> Callable[..., dict[str, Any]]:
    """Upload a users database holding `names` (or raw `body` bytes); return the PutObject response."""
    uploads = iter(range(1_000))

    def put(names: Sequence[str] = (), *, body: bytes | None = None, key: str = SNAPSHOT_OBJECT_KEY) -> dict[str, Any]:
        if body is None:
            body = make_users_db(names, filename=f"upload-{next(uploads)}.db").read_bytes()
        response: dict[str, Any] = s3_client.put_object(Bucket=SNAPSHOT_BUCKET, Key=key, Body=body)
        return response

    return put


@pytest.fixture
def aws_calls(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """Counts AWS operations (e.g. calls["GetObject"]) made by clients from `app.aws.client`."""
    calls: Counter[str] = Counter()
    real_client = aws_module.client

    def counting_client(service_name: str, **options: Any) -> Any:
        client = real_client(service_name, **options)

        def count(model: Any, **_: Any) -> None:
            calls[model.name] += 1

        client.meta.events.register("before-call", count)
        return client

    monkeypatch.setattr(aws_module, "client", counting_client)
    return calls


@pytest.fixture
def snapshot_settings(settings: Settings) -> Settings:
    return replace(settings, db_snapshot_s3_uri=S3Location(bucket=SNAPSHOT_BUCKET, key=SNAPSHOT_OBJECT_KEY))


@pytest.fixture
def make_snapshot_app(
    snapshot_settings: Settings, make_app: Callable[..., Flask], clock: FakeClock, s3_client: Any
) -> MakeSnapshotApp:
    """Factory: an app on the S3 snapshot (cold start inside moto), timed by the fake clock."""

    def make(**changes: Any) -> Flask:
        return make_app(replace(snapshot_settings, **changes), clock=clock)

    return make


@pytest.fixture
def slow_body(monkeypatch: pytest.MonkeyPatch) -> float:
    """S3 bodies that take this long per chunk of 1 KB (a slow or stalling network)."""
    seconds_per_chunk = 0.05
    real_iter_chunks = StreamingBody.iter_chunks

    def iter_slowly(self: StreamingBody, chunk_size: int = 1024) -> Iterator[bytes]:
        for chunk in real_iter_chunks(self, 1024):
            time.sleep(seconds_per_chunk)
            yield chunk

    monkeypatch.setattr(StreamingBody, "iter_chunks", iter_slowly)
    return seconds_per_chunk
