"""The same handler on a real PostgreSQL server: pooling, reconnects, limits, many containers.

The session starts a throwaway cluster of its own (tests/support/postgres_cluster.py: initdb + pg_ctl in
a temp dir, a free port on 127.0.0.1) and never touches the machine's server. With
TEST_POSTGRES_URL set (a superuser's URL of a server's maintenance database), the tests that
only read and write run against that server instead; the ones that restart the server or kill
its backends always run against the throwaway cluster. Every database is named for the run.
Needs the optional driver (requirements-postgres.txt); without it, or without PostgreSQL's
server binaries (and no TEST_POSTGRES_URL), these tests skip, saying why.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pytest
from flask import Flask
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import URL, make_url
from sqlalchemy.pool import QueuePool

from app.adapter import LambdaHandler
from app.config import Settings
from bench.net_proxy import LatencyProxy
from bench.postgres_pool import warm_containers
from tests.support import postgres_cluster
from tests.support.engines import count_connects, engine_of, queue_pool
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import HTTP_EVENT_BUILDERS, make_v1_event, make_v2_event, response_headers
from tests.support.logs import log_lines
from tests.support.pgbouncer import PgBouncer, PgBouncerUnavailableError, locate_pgbouncer, throwaway_pgbouncer
from tests.support.postgres_cluster import ClusterUnavailableError, PostgresCluster, locate_server, throwaway_cluster
from tests.support.runtime_api import RuntimeApi
from tests.support.runtime_client import PRIMED_HANDLER, TIMEOUT_SECONDS

pytestmark = pytest.mark.slow  # a throwaway PostgreSQL cluster and PgBouncer, restarts, killed backends

ROOT = Path(__file__).resolve().parents[2]
SHARED_SERVER_URL = os.environ.get("TEST_POSTGRES_URL")
DATABASE_PREFIX = "users_api_test_"  # + a uuid per run: checkouts testing at once never share a database
NAMES = ["Alice", "Bob", "Zoë", "李雷", "O'Brien, Jr."]
BODY = 'Alice,Bob,Zoë,李雷,"O\'Brien, Jr."'
# How long a test waits for the server to show the state it asserts (a backend exits after its
# client has gone, not when): long enough for a loaded machine, short enough to fail fast.
STATE_TIMEOUT_SECONDS = 10.0


def _connectable(url: URL | str) -> str | None:
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


def _wait_for(url: URL | str, seconds: float) -> str | None:
    deadline = time.monotonic() + seconds
    while (problem := _connectable(url)) is not None and time.monotonic() < deadline:
        time.sleep(0.5)
    return problem


def wait_until[T](read: Callable[[], T], done: Callable[[T], bool], *, timeout: float = STATE_TIMEOUT_SECONDS) -> T:
    """Call `read` until `done(value)` holds or `timeout` seconds have passed; return the last value read.

    The caller asserts on that value, so a state that never comes fails showing what was seen.
    """
    deadline = time.monotonic() + timeout
    while not done(value := read()) and time.monotonic() < deadline:
        time.sleep(0.05)
    return value


@dataclass(frozen=True)
class UsersDatabase:
    """A database made for this run on some server, holding the users table the README documents."""

    admin_url: URL  # the server's maintenance database, as a superuser
    url: URL


@contextmanager
def users_database(admin_url: URL) -> Iterator[UsersDatabase]:
    name = f"{DATABASE_PREFIX}{uuid.uuid4().hex}"
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT", pool_pre_ping=True)  # outlives a restart
    with admin.connect() as conn:
        conn.execute(text(f"CREATE DATABASE {name}"))
    try:
        url = admin_url.set(database=name)
        setup = create_engine(url)
        with setup.begin() as conn:
            conn.execute(text("CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL)"))
            conn.execute(
                text("INSERT INTO users (id, name) VALUES (:id, :name)"),
                [{"id": i, "name": n} for i, n in enumerate(NAMES, 1)],
            )
        setup.dispose()
        yield UsersDatabase(admin_url, url)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"))  # ours alone: the name is unique
        admin.dispose()


@pytest.fixture(scope="session")
def _driver() -> None:
    pytest.importorskip("psycopg", reason="PostgreSQL driver not installed: pip install -r requirements-postgres.txt")


@pytest.fixture(scope="session")
def cluster(_driver: None) -> Iterator[PostgresCluster]:
    """This session's own server; the only one tests restart or kill backends on."""
    try:
        bindir = locate_server()
    except ClusterUnavailableError as exc:
        pytest.skip(f"no throwaway PostgreSQL cluster: {exc}")
    with throwaway_cluster(bindir) as started:
        yield started


@pytest.fixture(scope="session")
def cluster_users_db(cluster: PostgresCluster) -> Iterator[UsersDatabase]:
    with users_database(cluster.admin_url) as database:
        yield database


@pytest.fixture(scope="session")
def users_db(request: pytest.FixtureRequest, _driver: None) -> Iterator[UsersDatabase]:
    """Where the tests that only read and write run: TEST_POSTGRES_URL's server if set, else the throwaway cluster."""
    if SHARED_SERVER_URL is None:
        yield request.getfixturevalue("cluster_users_db")
        return
    admin_url = make_url(SHARED_SERVER_URL)
    problem = _connectable(admin_url)
    if problem is not None:
        pytest.skip(f"no PostgreSQL server at TEST_POSTGRES_URL={admin_url.render_as_string()}: {problem}")
    with users_database(admin_url) as database:
        yield database


@pytest.fixture
def application_name() -> str:
    """A name this test's connections carry, to find them in pg_stat_activity."""
    return f"users-api-test-{uuid.uuid4().hex[:12]}"


def _settings_on(settings: Settings, database: UsersDatabase, application_name: str) -> Settings:
    url = database.url.update_query_dict({"application_name": application_name})
    return replace(settings, database_url=url.render_as_string(hide_password=False))


@pytest.fixture
def pg_settings(settings: Settings, users_db: UsersDatabase, application_name: str) -> Settings:
    return _settings_on(settings, users_db, application_name)


@pytest.fixture
def cluster_settings(settings: Settings, cluster_users_db: UsersDatabase, application_name: str) -> Settings:
    return _settings_on(settings, cluster_users_db, application_name)


@pytest.fixture(scope="session")
def pgbouncer(cluster: PostgresCluster) -> Iterator[PgBouncer]:
    """A real PgBouncer in transaction mode in front of this session's cluster."""
    try:
        binary = locate_pgbouncer()
    except PgBouncerUnavailableError as exc:
        pytest.skip(f"no PgBouncer: {exc}")
    with throwaway_pgbouncer(binary, cluster) as started:
        yield started


# How the app reaches the throwaway cluster: directly, or through PgBouncer in transaction mode.
ROUTES = ["direct", "pgbouncer"]


@pytest.fixture(params=ROUTES)
def route(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def _routed(database: UsersDatabase, route: str, request: pytest.FixtureRequest) -> UsersDatabase:
    if route == "direct":
        return database
    bouncer: PgBouncer = request.getfixturevalue("pgbouncer")
    return replace(database, url=bouncer.url_for(database.url))


@pytest.fixture
def routed_settings(
    settings: Settings,
    cluster_users_db: UsersDatabase,
    route: str,
    application_name: str,
    request: pytest.FixtureRequest,
) -> Settings:
    """Settings of a container on the throwaway cluster, reached by `route`."""
    return _settings_on(settings, _routed(cluster_users_db, route, request), application_name)


@contextmanager
def _observing(database: UsersDatabase) -> Iterator[Engine]:
    engine = create_engine(database.admin_url, isolation_level="AUTOCOMMIT")
    try:
        yield engine
    finally:
        engine.dispose()


@pytest.fixture
def observer(users_db: UsersDatabase) -> Iterator[Engine]:
    """A separate engine for looking at the server from outside the app."""
    with _observing(users_db) as engine:
        yield engine


@pytest.fixture
def cluster_observer(cluster_users_db: UsersDatabase) -> Iterator[Engine]:
    """The same, on the throwaway cluster."""
    with _observing(cluster_users_db) as engine:
        yield engine


def backend_pids(observer: Engine, application_name: str) -> list[int]:
    with observer.connect() as conn:
        rows = conn.execute(
            text("SELECT pid FROM pg_stat_activity WHERE application_name = :name ORDER BY pid"),
            {"name": application_name},
        )
        return [pid for (pid,) in rows]


def backend_pids_until(observer: Engine, application_name: str, done: Callable[[list[int]], bool]) -> list[int]:
    """backend_pids, read until `done(pids)`: backends start and exit a moment after their client says so."""
    return wait_until(lambda: backend_pids(observer, application_name), done)


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


def test_postgres_cluster_is_the_sessions_own(cluster: PostgresCluster, cluster_observer: Engine) -> None:
    with cluster_observer.connect() as conn:
        rows = conn.execute(
            text(
                "SELECT name, setting FROM pg_settings WHERE name IN "
                "('port', 'listen_addresses', 'unix_socket_directories', 'data_directory')"
            )
        )
        seen: dict[str, str] = dict(rows.all())

    assert seen == {
        "port": str(cluster.port),
        "listen_addresses": "127.0.0.1",
        "unix_socket_directories": str(cluster.root),
        "data_directory": str(cluster.data_dir),
    }
    assert cluster.port != 5432


def test_postgres_cluster_unavailable_without_server_binaries(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # no pg_config, no initdb
    monkeypatch.setattr(postgres_cluster, "DEBIAN_BINDIRS", tmp_path / "usr-lib-postgresql")

    with pytest.raises(ClusterUnavailableError) as raised:
        locate_server()

    assert str(raised.value) == (
        "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in `pg_config --bindir`, "
        f"{tmp_path / 'usr-lib-postgresql'}/*/bin or PATH: install PostgreSQL's server package"
    )


@pytest.mark.skipif(os.geteuid() != 0, reason="only root needs another account to run initdb as")
def test_postgres_cluster_as_root_needs_an_unprivileged_account(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(postgres_cluster, "find_bindir", lambda: tmp_path)
    monkeypatch.setattr(postgres_cluster, "SERVER_ACCOUNT", "users-api-no-such-account")

    with pytest.raises(ClusterUnavailableError) as raised:
        locate_server()

    assert str(raised.value) == (
        "running as root, and initdb refuses root: no 'users-api-no-such-account' account to run the throwaway cluster as"
    )


def test_postgres_cluster_of_a_killed_session_is_removed_by_the_next(_driver: None) -> None:
    try:
        bindir = locate_server()
    except ClusterUnavailableError as exc:
        pytest.skip(f"no throwaway PostgreSQL cluster: {exc}")
    # GIVEN a test session SIGKILLed while its cluster runs (its cleanup never ran)
    code = (
        "import os, signal\n"
        "from tests.support.postgres_cluster import locate_server, throwaway_cluster\n"
        "with throwaway_cluster(locate_server()) as cluster:\n"
        "    print(cluster.root, cluster.port, flush=True)\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    killed = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert killed.returncode == -9, killed.stderr
    root_name, port = killed.stdout.split()
    root = Path(root_name)
    orphan_url = URL.create("postgresql+psycopg", username="postgres", host="127.0.0.1", port=int(port))
    assert _connectable(orphan_url.set(database="postgres")) is None  # still running, orphaned

    # WHEN the next session cleans up THEN that cluster is stopped and deleted, and only it
    removed = postgres_cluster.remove_orphaned_clusters(bindir)

    assert root in removed
    assert not root.exists()
    assert _connectable(orphan_url.set(database="postgres")) is not None  # pg_ctl stop -w: nothing listens now


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
def test_postgres_serves_users_for_every_event_shape(
    make_event: Callable[..., dict[str, Any]], pg_handler: Callable[..., Any], context: FakeContext
) -> None:
    response = pg_handler(make_event(), context)

    assert response["statusCode"] == 200
    assert response["body"] == BODY
    assert response_headers(response)["content-type"] == "text/plain; charset=utf-8"


def test_postgres_etag_is_of_the_body_and_follows_writes(
    pg_handler: Callable[..., Any], users_db: UsersDatabase, context: FakeContext
) -> None:
    # PostgreSQL may change under the app: the tag is a hash of what was read, not an identity.
    first = pg_handler(make_v1_event(), context)
    etag = response_headers(first)["etag"]
    unchanged = pg_handler(make_v1_event(headers={"If-None-Match": etag}), context)
    unchanged_head = pg_handler(make_v1_event(method="HEAD", headers={"If-None-Match": etag}), context)
    writer = create_engine(users_db.url)
    try:
        with writer.begin() as conn:
            conn.execute(text("UPDATE users SET name = 'Bobby' WHERE id = 2"))
        changed = pg_handler(make_v1_event(headers={"If-None-Match": etag}), context)
    finally:
        with writer.begin() as conn:  # the database is shared by the session's tests
            conn.execute(text("UPDATE users SET name = 'Bob' WHERE id = 2"))
        writer.dispose()

    assert (first["statusCode"], first["body"]) == (200, BODY)
    for not_modified in (unchanged, unchanged_head):
        assert (not_modified["statusCode"], not_modified["body"]) == (304, "")
        assert response_headers(not_modified)["etag"] == etag
    assert (changed["statusCode"], changed["body"]) == (200, BODY.replace("Bob", "Bobby"))
    assert response_headers(changed)["etag"] != etag


def test_postgres_reuses_one_backend_across_warm_invocations(
    pg_handler: Callable[..., Any],
    serve_app: Callable[[Flask], LambdaHandler],
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
        seen.append(backend_pids_until(observer, application_name, lambda pids: len(pids) == 1))

    assert connects.count == 1
    assert len(seen[0]) == 1
    assert seen == [seen[0]] * 20


@pytest.mark.parametrize("pre_ping", [pytest.param(False, id="default-no-pre-ping"), pytest.param(True, id="pre-ping")])
def test_postgres_survives_backend_killed_between_invocations(
    pre_ping: bool,
    route: str,
    routed_settings: Settings,
    make_app: Callable[[Settings], Flask],
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
    cluster_observer: Engine,
    application_name: str,
    context: FakeContext,
    capsys: pytest.CaptureFixture[str],
) -> None:
    handler = serve_app(make_app(replace(routed_settings, pool_pre_ping=pre_ping)))
    assert handler(make_v1_event(), context)["statusCode"] == 200
    first_pid = backend_pids_until(cluster_observer, application_name, lambda pids: len(pids) == 1)

    # The container is frozen; meanwhile the server (or RDS Proxy, or a NAT) drops its connection.
    assert terminate_backends(cluster_observer, application_name) == 1
    assert backend_pids_until(cluster_observer, application_name, lambda pids: pids == []) == []
    response = handler(make_v1_event(), context)

    assert (response["statusCode"], response["body"]) == (200, BODY)
    replaced = backend_pids_until(cluster_observer, application_name, lambda pids: pids not in ([], first_pid))
    assert replaced not in ([], first_pid)
    assert queue_pool(served_engine()).checkedout() == 0
    warnings = [line["message"] for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    # Pre-ping replaces the dead connection at checkout; without it, the read is retried once.
    # PgBouncer drops its dead server connection itself: the app's connection to it lives on.
    expected = (
        [] if pre_ping or route == "pgbouncer" else ["database connection lost; retrying once on a new connection"]
    )
    assert warnings == expected


def test_postgres_recovers_after_server_restart(
    cluster_settings: Settings,
    make_app: Callable[[Settings], Flask],
    monkeypatch: pytest.MonkeyPatch,
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
    cluster: PostgresCluster,
    context: FakeContext,
) -> None:
    handler = serve_app(make_app(cluster_settings))
    assert handler(make_v2_event(), context)["statusCode"] == 200

    cluster.restart()
    assert _wait_for(cluster.admin_url, 60) is None
    response = handler(make_v2_event(), context)

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
        assert backend_pids_until(observer, application_name, lambda pids: pids == []) == []

    assert connects.count == 3


def test_postgres_many_containers_hold_one_connection_each(users_db: UsersDatabase, observer: Engine) -> None:
    # 8 fresh interpreters, each importing the handler (default pool: 5 + 10 overflow) and
    # serving 10 requests, then staying warm; the server sees one connection per container.
    with warm_containers(users_db.url, containers=8, requests=10) as application_name:
        connections = backend_pids_until(observer, application_name, lambda pids: len(pids) == 8)

    assert len(connections) == 8


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


def test_postgres_locked_table_is_503_before_the_deadline(
    routed_settings: Settings,
    cluster_users_db: UsersDatabase,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
) -> None:
    # GIVEN a warm container, and another session holding the users table in ACCESS EXCLUSIVE mode
    pg_handler = serve_app(make_app(routed_settings))
    assert pg_handler(make_v1_event(), FakeContext())["statusCode"] == 200
    locker = create_engine(cluster_users_db.url)
    try:
        with locker.connect() as conn:
            conn.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))

            # WHEN an invocation with 4 s left reads THEN it gets the 503 JSON before those 4 s are up
            started = time.monotonic()
            response = pg_handler(make_v1_event(), FakeContext(remaining_ms=4_000))
            elapsed = time.monotonic() - started
            conn.rollback()
    finally:
        locker.dispose()

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["error"] == "database_unavailable"
    assert elapsed < 4.0
    assert queue_pool(served_engine()).checkedout() == 0
    # And the time limit was the read's own: the next read, on the same connection, is served.
    assert pg_handler(make_v1_event(), FakeContext())["statusCode"] == 200


def test_postgres_survives_backend_killed_during_a_call_without_pre_ping(
    routed_settings: Settings,
    cluster_users_db: UsersDatabase,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
    served_engine: Callable[[], Engine],
    cluster_observer: Engine,
    application_name: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    # GIVEN a warm container without pre-ping, whose next read will wait on a lock another session holds
    handler = serve_app(make_app(replace(routed_settings, pool_pre_ping=False)))
    assert handler(make_v1_event(), FakeContext())["statusCode"] == 200
    locker = create_engine(cluster_users_db.url)
    try:
        with locker.connect() as conn, ThreadPoolExecutor(max_workers=1) as pool:
            conn.execute(text("LOCK TABLE users IN ACCESS EXCLUSIVE MODE"))
            in_flight = pool.submit(handler, make_v1_event(), FakeContext())

            # WHEN its backend is killed in the middle of the statement, then the lock released
            def waiting_on_lock() -> bool:
                with cluster_observer.connect() as observing:
                    return bool(
                        observing.execute(
                            text(
                                "SELECT count(*) FROM pg_stat_activity"
                                " WHERE application_name = :name AND wait_event_type = 'Lock'"
                            ),
                            {"name": application_name},
                        ).scalar_one()
                    )

            deadline = time.monotonic() + 10
            while not waiting_on_lock():
                assert time.monotonic() < deadline, "the read never waited on the lock"
                time.sleep(0.05)
            assert terminate_backends(cluster_observer, application_name) == 1
            time.sleep(0.2)  # let the retry reach the lock too, then let it through
            conn.rollback()
            response = in_flight.result(timeout=30)
    finally:
        locker.dispose()

    # THEN the read was retried once on a new connection and answered in full
    assert (response["statusCode"], response["body"]) == (200, BODY)
    assert queue_pool(served_engine()).checkedout() == 0
    warnings = [line["message"] for line in log_lines(capsys.readouterr().out) if line["level"] == "WARNING"]
    assert warnings == ["database connection lost; retrying once on a new connection"]


def test_postgres_snapstart_restore_uses_no_connection_from_before_the_snapshot(
    request: pytest.FixtureRequest,
    cluster_settings: Settings,
    cluster_observer: Engine,
    application_name: str,
) -> None:
    # GIVEN a SnapStart init on PostgreSQL whose pool was primed (one live connection), snapshotted
    # and waiting to be restored
    start = request.getfixturevalue("start_runtime")
    assert cluster_settings.database_url is not None
    with RuntimeApi(restore_released=False) as api:
        runtime = start(
            api,
            handler=PRIMED_HANDLER,
            AWS_LAMBDA_INITIALIZATION_TYPE="snap-start",
            DATABASE_URL=cluster_settings.database_url,
        )
        api.wait_for_restore_poll(timeout=TIMEOUT_SECONDS)

        # THEN the before-snapshot hook closed it: the server has no backend of ours (it ends
        # asynchronously after the client's goodbye, so wait for that); kill any anyway
        assert backend_pids_until(cluster_observer, application_name, lambda found: found == []) == []
        terminate_backends(cluster_observer, application_name)

        # WHEN restored THEN every invocation is served on new connections, with no reconnect
        api.release_restore()
        request_ids = [api.queue_event(make_v2_event()) for _ in range(3)]
        answers = runtime.wait_for_answers(api, request_ids)
        pids = backend_pids_until(cluster_observer, application_name, lambda found: len(found) == 1)
        runtime.stop()

    served = [answers[request_id].json() for request_id in request_ids]
    assert [(response["statusCode"], response["body"]) for response in served] == [(200, BODY)] * 3
    assert len(pids) == 1
    lines = runtime.log_lines()
    assert [line["message"] for line in lines if line["level"] == "WARNING"] == []
    assert [line["message"] for line in lines].count("after restore: ready") == 1


# --- behind a pooler, and over the wire ----------------------------------------------------------


def test_postgres_serves_and_pages_by_each_route(
    routed_settings: Settings, make_app: Callable[[Settings], Flask], serve_app: Callable[[Flask], LambdaHandler]
) -> None:
    handler = serve_app(make_app(routed_settings))

    whole = handler(make_v2_event(), FakeContext())
    seen: list[str] = []
    query: dict[str, str] | None = {"limit": "2", "format": "json"}
    for _ in range(len(NAMES)):
        page = handler(make_v2_event(query=query), FakeContext())
        assert page["statusCode"] == 200, page
        body = json.loads(page["body"])
        seen += body["users"]
        if body["next"] is None:
            break
        query = {"limit": "2", "format": "json", "after": body["next"]}

    assert (whole["statusCode"], whole["body"]) == (200, BODY)
    assert seen == NAMES


def test_pgbouncer_keeps_its_default_startup_parameter_rules(
    pgbouncer: PgBouncer, cluster_users_db: UsersDatabase
) -> None:
    # What made every request a 503 before: a statement_timeout in the startup packet.
    psycopg = pytest.importorskip("psycopg")
    url = pgbouncer.url_for(cluster_users_db.url)

    with pytest.raises(psycopg.OperationalError) as refused:
        psycopg.connect(
            host=url.host, port=url.port, user=url.username, dbname=url.database, options="-c statement_timeout=1000"
        ).close()

    assert "unsupported startup parameter: options" in str(refused.value)


def _frontend_messages(sent: bytes) -> tuple[dict[str, str], list[tuple[str, bytes]]]:
    """A client's bytes as PostgreSQL's frontend protocol: (startup parameters, [(type, body)])."""
    # libpq's sslmode=prefer asks for TLS (SSLRequest, or GSSENCRequest) first; the server says no.
    while int.from_bytes(sent[4:8], "big") in (80877103, 80877104):
        sent = sent[8:]
    length = int.from_bytes(sent[:4], "big")
    fields = sent[8:length].split(b"\0")
    startup = {fields[i].decode(): fields[i + 1].decode() for i in range(0, len(fields) - 2, 2) if fields[i]}
    messages: list[tuple[str, bytes]] = []
    at = length
    while at < len(sent):
        kind, size = chr(sent[at]), int.from_bytes(sent[at + 1 : at + 5], "big")
        messages.append((kind, sent[at + 5 : at + 1 + size]))
        at += 1 + size
    return startup, messages


_READ_SQL = re.compile(
    r"SET LOCAL statement_timeout = \d+; SELECT id, name FROM users (WHERE id > \d+ )?ORDER BY id LIMIT \d+"
)


@pytest.fixture
def counted_settings(
    settings: Settings, cluster_users_db: UsersDatabase, route: str, request: pytest.FixtureRequest
) -> Iterator[tuple[Settings, LatencyProxy]]:
    """Settings whose connections go through a counting proxy (no delay) on the way to `route`."""
    database = _routed(cluster_users_db, route, request)
    assert database.url.port is not None
    with LatencyProxy(("127.0.0.1", database.url.port)) as proxy:
        url = database.url.set(port=proxy.port)
        yield replace(settings, database_url=url.render_as_string(hide_password=False)), proxy


def test_postgres_warm_get_is_one_round_trip_with_no_session_state(
    counted_settings: tuple[Settings, LatencyProxy],
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
) -> None:
    settings, proxy = counted_settings
    handler = serve_app(make_app(settings))
    assert handler(make_v2_event(), FakeContext())["body"] == BODY  # cold: connect, dialect set-up

    # WHEN warm GETs are served
    for _ in range(10):  # past psycopg's default prepare threshold (5)
        proxy.reset()
        response = handler(make_v2_event(), FakeContext())

        # THEN each is one client-to-server flight, answered
        assert (response["statusCode"], response["body"]) == (200, BODY)
        assert proxy.flights == 1

    # AND nothing sent sets session state: no startup `options`, and after the connection's
    # set-up only simple Query messages each holding a SET LOCAL and the read (no Parse: no
    # prepared statements; no session SET, BEGIN, ROLLBACK, LISTEN or advisory lock)
    [sent] = proxy.sent_by_clients()
    startup, messages = _frontend_messages(sent)
    assert "options" not in startup
    warm = messages[-10:]
    assert [kind for kind, _ in warm] == ["Q"] * 10
    assert all(_READ_SQL.fullmatch(body.rstrip(b"\0").decode()) for _, body in warm), warm
    assert not any(kind == "P" and body.split(b"\0")[0] for kind, body in messages)  # no named statement
    every_sql = b"".join(body for kind, body in messages if kind in "QP").upper()
    for verb in (b"LISTEN", b"ADVISORY", b"PREPARE ", b"SET SESSION", b"SET STATEMENT_TIMEOUT"):
        assert verb not in every_sql


BIG_TABLE_ROWS = 200_000


@pytest.fixture(scope="session")
def big_users_db(cluster: PostgresCluster) -> Iterator[UsersDatabase]:
    with users_database(cluster.admin_url) as database:
        setup = create_engine(database.url)
        with setup.begin() as conn:
            conn.execute(text("DELETE FROM users"))
            conn.execute(
                text("INSERT INTO users (id, name) SELECT i, 'u' || i FROM generate_series(1, :n) i"),
                {"n": BIG_TABLE_ROWS},
            )
        setup.dispose()
        yield database


def test_postgres_200k_page_is_few_reads_within_the_limit(
    big_users_db: UsersDatabase,
    settings: Settings,
    route: str,
    request: pytest.FixtureRequest,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
) -> None:
    database = _routed(big_users_db, route, request)
    assert database.url.port is not None
    with LatencyProxy(("127.0.0.1", database.url.port)) as proxy:
        url = database.url.set(port=proxy.port)
        handler = serve_app(make_app(replace(settings, database_url=url.render_as_string(hide_password=False))))
        assert handler(make_v2_event(query={"limit": "1"}), FakeContext())["statusCode"] == 200
        proxy.reset()

        response = handler(make_v2_event(), FakeContext())
        flights = proxy.flights
        _, messages = _frontend_messages(proxy.sent_by_clients()[0])

    names = response["body"].split(",")
    assert response["statusCode"] == 200
    assert len(names) == BIG_TABLE_ROWS
    assert names[0] == "u1" and names[-1] == f"u{BIG_TABLE_ROWS}"
    assert "link" not in response_headers(response)
    reads = [body for kind, body in messages if kind == "Q" and _READ_SQL.fullmatch(body.rstrip(b"\0").decode())]
    assert len(reads[1:]) == flights <= 12  # after the warm-up's one read, only reads: one flight each
