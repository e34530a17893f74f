"""Fixtures for the AWS integrations: moto, an S3 bucket with snapshots, a fake clock."""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from typing import Any

import boto3
import pytest
from botocore.response import StreamingBody
from flask import Flask
from moto import mock_aws
from moto.core import enable_iam_authentication

from app.config import S3Location, Settings
from app.storage import aws as aws_module
from tests.conftest import MakeUsersDb

MakeSnapshotApp = Callable[..., Flask]


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's `mock_aws` for one test: clients made inside it (never at import) talk to moto."""
    with mock_aws():
        yield


SNAPSHOT_BUCKET = "users-api-snapshots"
SNAPSHOT_OBJECT_KEY = "prod/users.db"


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


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


@contextmanager
def acting_as_user_without_access(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Inside a mock: clients created in the block act as an IAM user allowed only s3:ListBucket, with IAM enforced.

    Set up S3 objects and secrets first: once enforced, the fake default credentials are refused too.
    """
    iam = boto3.client("iam", region_name="us-east-1")
    iam.create_user(UserName="users-api")
    policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:ListBucket", "Resource": "*"}]}
    iam.put_user_policy(UserName="users-api", PolicyName="list-only", PolicyDocument=json.dumps(policy))
    key = iam.create_access_key(UserName="users-api")["AccessKey"]
    with monkeypatch.context() as patch:
        patch.setenv("AWS_ACCESS_KEY_ID", key["AccessKeyId"])
        patch.setenv("AWS_SECRET_ACCESS_KEY", key["SecretAccessKey"])
        patch.delenv("AWS_SESSION_TOKEN")
        with enable_iam_authentication():
            yield


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
