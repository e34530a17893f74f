"""Fixtures: temp databases, apps on them, and `handler.handler` pointed at them."""

from __future__ import annotations

import importlib
import json
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine, event

from app import create_app
from app.config import DEFAULT_BUNDLED_DB_PATH, Settings
from app.db import ENGINE_KEY
from app.invocation import InvocationRecorder
from app.logs import forget_redactions

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
def make_app() -> Iterator[Callable[[Settings], Flask]]:
    """Factory for apps with custom settings; their engines are disposed afterwards."""
    created: list[Flask] = []

    def make(custom: Settings) -> Flask:
        application = create_app(custom)
        created.append(application)
        return application

    yield make
    for application in created:
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
