"""The same handler on a real PostgreSQL server: pooling, reconnects, limits, many containers.

Needs a server at TEST_POSTGRES_URL (default: postgres@127.0.0.1:5432, trust auth) and the
optional driver (requirements-postgres.txt). A local cluster that is installed but stopped is
started; only where no server can be had do these tests skip, saying why.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool

from app.adapter import LambdaHandler
from app.config import Settings
from bench.postgres_pool import simulate_containers
from tests.conftest import FakeContext, count_connects, engine_of, log_lines, queue_pool
from tests.events import (
    HTTP_EVENT_BUILDERS,
    make_v1_event,
    make_v2_event,
    response_headers,
)

ROOT = Path(__file__).resolve().parent.parent
ADMIN_URL = os.environ.get("TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
TEST_DATABASE = "users_api_test"
NAMES = ["Alice", "Bob", "Zoë", "李雷", "O'Brien, Jr."]
BODY = 'Alice,Bob,Zoë,李雷,"O\'Brien, Jr."'


def _connectable(url: str) -> str | None:
    """None if a server answers at `url`, else why not."""
    engine = create_engine(url, connect_args={"connect_timeout": 3}, poolclass=None)
    try:
        with engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        return None
    except Exception as exc:
        return str(exc).splitlines()[0]
    finally:
        engine.dispose()


def _local_clusters() -> list[str]:
    config = Path("/etc/postgresql")
    return sorted(p.name for p in config.iterdir() if (p / "main").is_dir()) if config.is_dir() else []


def _start_local_cluster() -> None:
    for version in _local_clusters():
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "start"],
            capture_output=True,
            timeout=60,
            check=False,
        )


def _wait_for(url: str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while (problem := _connectable(url)) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    return problem


@pytest.fixture(scope="session")
def admin_url() -> str:
    """A URL of the server's maintenance database; skips if there is no server to be had."""
    pytest.importorskip("psycopg", reason="PostgreSQL driver not installed: pip install -r requirements-postgres.txt")
    problem = _connectable(ADMIN_URL)
    if problem is not None and shutil.which("pg_ctlcluster") and _local_clusters():
        _start_local_cluster()  # installed but stopped: the test command starts it
        problem = _wait_for(ADMIN_URL, 30)
    if problem is not None:
        pytest.skip(f"no PostgreSQL server at {make_url(ADMIN_URL).render_as_string()}: {problem}")
    return ADMIN_URL


@pytest.fixture(scope="session")
def database_url(admin_url: str) -> Iterator[URL]:
    """A fresh database holding the users table the README documents."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # outlives a restart
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
        conn.execute(text(f"CREATE DATABASE {TEST_DATABASE}"))
    url = make_url(admin_url).set(database=TEST_DATABASE)
    setup = create_engine(url)
    with setup.begin() as conn:
        conn.execute(text("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)"))
        conn.execute(
            text("INSERT INTO users (id, name) VALUES (:id, :name)"),
            [{"id": i, "name": n} for i, n in enumerate(NAMES, 1)],
        )
    setup.dispose()
    yield url
    with admin.connect() as conn:
        conn.execute(text(f"DROP DATABASE IF EXISTS {TEST_DATABASE} WITH (FORCE)"))
    admin.dispose()


@pytest.fixture
def application_name() -> str:
    """A name this test's connections carry, to find them in pg_stat_activity."""
    return f"users-api-test-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def pg_settings(settings: Settings, database_url: URL, application_name: str) -> Settings:
    url = database_url.update_query_dict({"application_name": application_name})
    return replace(settings, database_url=url.render_as_string(hide_password=False))


@pytest.fixture
def observer(admin_url: str) -> Iterator[Engine]:
    """A separate engine for looking at the server from outside the app."""
    engine = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    yield engine
    engine.dispose()


def backend_pids(observer: Engine, application_name: str) -> list[int]:
    with observer.connect() as conn:
        rows = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name ORDER BY pid"),
            {"name": application_name},
        )
        return [pid for (pid,) in rows]


def terminate_backends(observer: Engine, application_name: str) -> int:
    with observer.connect() as conn:
        killed = conn.execute(
            text("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = :name"),
            {"name": application_name},
        ).all()
    return len(killed)


@pytest.fixture
def pg_handler(
    pg_settings: Settings,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
) -> LambdaHandler:
    """The handler of a container started with DATABASE_URL pointing at PostgreSQL."""
    return serve_app(make_app(pg_settings))


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_postgres_serves_users_for_every_event_shape(
    make_event: Callable[..., dict[str, Any]], pg_handler: Callable[..., Any], context: FakeContext
) -> None:
    response = pg_handler(make_event(), context)

    assert response["statusCode"] == 200
    assert response["body"] == BODY
    assert response_headers(response)["content-type"] == "text/plain; charset=utf-8"


def test_postgres_reuses_one_backend_across_warm_invocations(
    pg_handler: Callable[..., Any],
    served_engine: Callable[[], Engine],
    observer: Engine,
    application_name: str,
    context: FakeContext,
) -> None:
    connects = count_connects(served_engine())
    seen: list[list[int]] = []

    for _ in range(20):
        assert pg_handler(make_v2_event(), context)["statusCode"] == 200
        assert queue_pool(served_engine()).checkedout() == 0
        seen.append(backend_pids(observer, application_name))

    assert connects.count == 1
    assert len(seen[0]) == 1
    assert seen == [seen[0]] * 20


@pytest.mark.parametrize("pre_ping", [pytest.param(None, id="default-pre-ping"), pytest.param(False, id="no-pre-ping")])
def test_postgres_survives_backend_killed_between_invocations(
    pre_ping: bool | None,
    pg_settings: Settings,
    make_app: Callable[[Settings], Flask],
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
    observer: Engine,
    application_name: str,
    context: FakeContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = serve_app(make_app(replace(pg_settings, pool_pre_ping=pre_ping)))
    assert handler(make_v1_event(), context)["statusCode"] == 200
    first_pid = backend_pids(observer, application_name)

    # The container is frozen; meanwhile the server (or RDS Proxy, or a NAT) drops its connection.
    assert terminate_backends(observer, application_name) == 1
    response = handler(make_v1_event(), context)

    assert (response["statusCode"], response["body"]) == (200, BODY)
    assert backend_pids(observer, application_name) not in ([], first_pid)
    assert queue_pool(served_engine()).checkedout() == 0
    warnings = [line["message"] for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    # Pre-ping replaces the dead connection at checkout; without it, the read is retried once.
    expected = [] if pre_ping is None else ["database connection lost; retrying once on a new connection"]
    assert warnings == expected


@pytest.mark.skipif(
    not (shutil.which("pg_ctlcluster") and _local_clusters() and os.geteuid() == 0),
    reason="restarting the server needs a local cluster managed by pg_ctlcluster, as root",
)
def test_postgres_recovers_after_server_restart(
    pg_handler: Callable[..., Any],
    served_engine: Callable[[], Engine],
    admin_url: str,
    context: FakeContext,
) -> None:
    if make_url(admin_url).host not in ("127.0.0.1", "localhost"):
        pytest.skip("TEST_POSTGRES_URL is not the local cluster")
    assert pg_handler(make_v2_event(), context)["statusCode"] == 200

    for version in _local_clusters():
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            capture_output=True,
            timeout=120,
            check=True,
        )
    assert _wait_for(admin_url, 60) is None
    response = pg_handler(make_v2_event(), context)

    assert (response["statusCode"], response["body"]) == (200, BODY)
    assert queue_pool(served_engine()).checkedout() == 0


def test_postgres_pool_timeout_is_503_with_retry_after_and_no_leak(
    pg_settings: Settings,
    make_app: Callable[[Settings], Flask],
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
    context: FakeContext,
) -> None:
    tight = replace(pg_settings, pool_size=1, max_overflow=0, pool_timeout=0.2)
    application = make_app(tight)
    handler = serve_app(application)
    engine: Engine = engine_of(application)
    pool = engine.pool
    assert isinstance(pool, QueuePool)

    with engine.connect():  # a request in flight holds the only connection
        response = handler(make_v2_event(), context)
        assert pool.checkedout() == 1

    assert response["statusCode"] == 503
    assert response_headers(response)["retry-after"] == "1"
    assert response_headers(response)["content-type"] == "application/json"
    assert pool.checkedout() == 0
    assert handler(make_v2_event(), context)["statusCode"] == 200


def test_postgres_null_pool_keeps_no_connection_between_invocations(
    pg_settings: Settings,
    make_app: Callable[[Settings], Flask],
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
    observer: Engine,
    application_name: str,
    context: FakeContext,
) -> None:
    application = make_app(replace(pg_settings, db_pool="null"))
    handler = serve_app(application)
    connects = count_connects(engine_of(application))

    for _ in range(3):
        assert handler(make_v1_event(), context)["body"] == BODY
        assert backend_pids(observer, application_name) == []

    assert connects.count == 3


def test_postgres_many_containers_hold_one_connection_each(database_url: URL, admin_url: str) -> None:
    # 8 fresh interpreters, each importing the handler (default pool: 5 + 10 overflow) and
    # serving 10 requests, then staying warm; the server sees one connection per container.
    connections = simulate_containers(database_url, admin_url, containers=8, requests=10)

    assert connections == 8


def test_postgres_driver_not_imported_by_sqlite_cold_start(tmp_path: Path) -> None:
    probe = "import sys, handler; print(sorted(m for m in sys.modules if m.split('.')[0] == 'psycopg'))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"SQLITE_COPY_PATH": str(tmp_path / "users.db"), "LOG_LEVEL": "WARNING", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "[]"
