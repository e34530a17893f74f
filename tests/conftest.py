"""Fixtures: temp databases, apps on them, and `handler.handler` pointed at them."""

from __future__ import annotations

import importlib
import json
import os
import sqlite3
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from flask import Flask
from flask.testing import FlaskClient
from moto import mock_aws
from moto.core import enable_iam_authentication
from sqlalchemy import Engine, event

from app import aws as aws_module
from app import create_app
from app.config import DEFAULT_BUNDLED_DB_PATH, Settings
from app.db import ENGINE_KEY
from app.invocation import InvocationRecorder
from app.logs import forget_redactions
from app.snapshot_database import SNAPSHOT_KEY

MakeUsersDb = Callable[..., Path]
LambdaHandler = Callable[[Any, Any], dict[str, Any]]


@dataclass
class FakeContext:
    """The Lambda context attributes a handler may read."""

    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    function_name: str = "users-api-dev-api"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:users-api-dev-api"

    def get_remaining_time_in_millis(self) -> int:
        return 30_000


@pytest.fixture(autouse=True)
def _no_adapter_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # serverless-wsgi reads these from os.environ on every request; a developer's shell must not leak in.
    monkeypatch.delenv("STRIP_STAGE_PATH", raising=False)
    monkeypatch.delenv("API_GATEWAY_BASE_PATH", raising=False)


@pytest.fixture(autouse=True)
def _fake_aws_credentials(monkeypatch: pytest.MonkeyPatch, tmp_path_factory: pytest.TempPathFactory) -> None:
    """No test can reach AWS with real credentials: fake ones, a real region, no profile or metadata lookups."""
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_REGION": "us-east-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }.items():
        monkeypatch.setenv(name, value)
    # A developer's ~/.aws must not leak in.
    no_aws_config = str(tmp_path_factory.getbasetemp() / "no-aws-config")
    monkeypatch.setenv("AWS_CONFIG_FILE", no_aws_config)
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", no_aws_config)
    for name in list(os.environ):
        if name == "AWS_PROFILE" or name.startswith(("AWS_ENDPOINT_URL", "AWS_CONTAINER_CREDENTIALS")):
            monkeypatch.delenv(name)


@pytest.fixture
def aws() -> Iterator[None]:
    """moto's `mock_aws` for one test: clients made inside it (never at import) talk to moto."""
    with mock_aws():
        yield


@pytest.fixture(autouse=True)
def _forget_redactions() -> Iterator[None]:
    # Secrets registered by one test must not mask another test's log lines.
    yield
    forget_redactions()


@pytest.fixture
def make_users_db(tmp_path: Path) -> MakeUsersDb:
    """Factory: a SQLite file with a `users(id, name)` table holding `names`."""

    def make(names: Sequence[str], *, filename: str = "users.db") -> Path:
        path = tmp_path / filename
        with sqlite3.connect(path) as connection:
            connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
            connection.executemany("INSERT INTO users (name) VALUES (?)", [(name,) for name in names])
        connection.close()
        return path

    return make


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    """The default configuration: the bundled database, copied to a temp dir instead of /tmp."""
    return Settings(bundled_db_path=DEFAULT_BUNDLED_DB_PATH, sqlite_copy_path=tmp_path / "lambda-tmp" / "users.db")


@pytest.fixture
def app(settings: Settings) -> Iterator[Flask]:
    application = create_app(settings)
    yield application
    application.extensions[ENGINE_KEY].dispose()


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Factory for apps with custom settings (and `clock=`); their engines are disposed afterwards."""
    created: list[Flask] = []

    def make(custom: Settings, **options: Any) -> Flask:
        application = create_app(custom, **options)
        created.append(application)
        return application

    yield make
    for application in created:
        snapshot = application.extensions.get(SNAPSHOT_KEY)
        if snapshot is not None:
            snapshot.close()
        else:
            application.extensions[ENGINE_KEY].dispose()


@pytest.fixture
def sqlite_settings(settings: Settings) -> Callable[[Path], Settings]:
    """Settings serving an existing SQLite file through DATABASE_URL."""
    return lambda path: replace(settings, database_url=f"sqlite:///{path}")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture(scope="session")
def handler_module(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ModuleType]:
    """`handler`, imported once as Lambda would, with its /tmp copy in a temp dir."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("SQLITE_COPY_PATH", str(tmp_path_factory.mktemp("lambda-tmp") / "users.db"))
        patch.delenv("DATABASE_URL", raising=False)
        module = importlib.import_module("handler")
    yield module
    module.engine.dispose()


def point_handler_at(monkeypatch: pytest.MonkeyPatch, module: ModuleType, application: Flask) -> LambdaHandler:
    """Make `module.handler` serve `application`, as if the container had been started with it.

    `module.engine` follows: handler.py looks it up on the app at each access.
    """
    monkeypatch.setattr(module, "app", application)
    monkeypatch.setattr(module, "invocations", InvocationRecorder(application))
    handler: LambdaHandler = module.handler
    return handler


@pytest.fixture
def serve_db(
    make_app: Callable[[Settings], Flask],
    sqlite_settings: Callable[[Path], Settings],
    monkeypatch: pytest.MonkeyPatch,
    handler_module: ModuleType,
) -> Callable[..., LambdaHandler]:
    """Factory: `handler.handler` serving the SQLite file `path`, with Settings fields overridden."""

    def serve(path: Path, **overrides: Any) -> LambdaHandler:
        return point_handler_at(monkeypatch, handler_module, make_app(replace(sqlite_settings(path), **overrides)))

    return serve


@pytest.fixture
def lambda_handler(monkeypatch: pytest.MonkeyPatch, handler_module: ModuleType, app: Flask) -> LambdaHandler:
    """`handler.handler` on a fresh container: the `app` fixture, cold-start flag set."""
    return point_handler_at(monkeypatch, handler_module, app)


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


@dataclass
class ConnectCounter:
    """Counts DBAPI connections an engine opens."""

    count: int = 0


def count_connects(engine: Engine) -> ConnectCounter:
    counter = ConnectCounter()

    def on_connect(*_: Any) -> None:
        counter.count += 1

    event.listen(engine, "connect", on_connect)
    return counter


def log_lines(captured_out: str) -> list[dict[str, Any]]:
    """Parse captured stdout: every line must be a JSON object."""
    return [json.loads(line) for line in captured_out.splitlines() if line.strip()]


# --- AWS (moto) -------------------------------------------------------------------------

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
