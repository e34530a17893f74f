"""Fixtures: temp databases, apps on them, and Lambda handlers made for them with `make_handler`.

Helpers the tests import are in tests/support/; this file holds fixtures and hooks only.
"""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from sqlalchemy import Engine

from app import create_app
from app.adapter import LambdaHandler, make_handler
from app.config import DEFAULT_BUNDLED_DB_PATH, Settings
from app.logs import forget_redactions
from app.storage import DATABASE_KEY
from tests.support.engines import engine_of
from tests.support.lambda_context import FakeContext
from tests.support.runtime_api import RuntimeApi
from tests.support.runtime_client import HANDLER, RuntimeProcess
from tests.support.tables import MakeUsersDb

TESTS_DIR = Path(__file__).resolve().parent
# Folders whose every test is slow: each builds the zip, runs the Serverless CLI or a runtime client.
SLOW_FOLDERS = ("deploy",)


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
    application.extensions[DATABASE_KEY].dispose()


@pytest.fixture
def make_app() -> Iterator[Callable[..., Flask]]:
    """Factory for apps with custom settings (and `clock=`); their databases are disposed afterwards."""
    created: list[Flask] = []

    def make(custom: Settings, **options: Any) -> Flask:
        application = create_app(custom, **options)
        created.append(application)
        return application

    yield make
    for application in created:
        application.extensions[DATABASE_KEY].dispose()


@pytest.fixture
def sqlite_settings(settings: Settings) -> Callable[[Path], Settings]:
    """Settings serving an existing SQLite file through DATABASE_URL."""
    return lambda path: replace(settings, database_url=f"sqlite:///{path}")


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    return app.test_client()


@pytest.fixture
def served_apps() -> list[Flask]:
    """The apps behind the handlers `serve_db` and `lambda_handler` made in this test, in order."""
    return []


@pytest.fixture
def served_engine(served_apps: list[Flask]) -> Callable[[], Engine]:
    """The engine of the app behind the handler made last (to check its pool after invocations)."""
    return lambda: engine_of(served_apps[-1])


@pytest.fixture
def serve_app(served_apps: list[Flask]) -> Callable[[Flask], LambdaHandler]:
    """Factory: the handler of a fresh container serving `application` (see `served_engine`)."""

    def serve(application: Flask) -> LambdaHandler:
        served_apps.append(application)
        return make_handler(application)

    return serve


@pytest.fixture
def serve_db(
    make_app: Callable[[Settings], Flask],
    sqlite_settings: Callable[[Path], Settings],
    serve_app: Callable[[Flask], LambdaHandler],
) -> Callable[..., LambdaHandler]:
    """Factory: a fresh container's handler serving the SQLite file `path`, with Settings fields overridden."""
    return lambda path, **overrides: serve_app(make_app(replace(sqlite_settings(path), **overrides)))


@pytest.fixture
def lambda_handler(app: Flask, served_apps: list[Flask]) -> LambdaHandler:
    """The Lambda handler of a fresh container serving the `app` fixture (cold-start flag set)."""
    served_apps.append(app)
    return make_handler(app)


@pytest.fixture
def context() -> FakeContext:
    return FakeContext()


@pytest.fixture
def start_runtime(tmp_path: Path) -> Iterator[Callable[..., RuntimeProcess]]:
    """Factory: start `python -m awslambdaric <handler>` against a RuntimeApi; stopped at teardown."""
    started: list[RuntimeProcess] = []

    def start(api: RuntimeApi, *, handler: str = HANDLER, **extra_env: str) -> RuntimeProcess:
        runtime = RuntimeProcess.start(
            api, tmp_path, name=f"runtime-{len(started)}", handler=handler, extra_env=extra_env
        )
        started.append(runtime)
        return runtime

    yield start
    for runtime in started:
        runtime.stop()


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test under SLOW_FOLDERS `slow`, so `-m "not slow"` (`make test-fast`) leaves them out."""
    for item in items:
        if item.path.is_relative_to(TESTS_DIR) and item.path.relative_to(TESTS_DIR).parts[0] in SLOW_FOLDERS:
            item.add_marker(pytest.mark.slow)
