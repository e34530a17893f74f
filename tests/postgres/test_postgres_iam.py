"""DB_IAM_AUTH: each new PostgreSQL connection gets a fresh IAM token as its password, over TLS.

Tokens are presigned locally (fake credentials, tests/conftest.py): nothing reaches AWS. The
connections are recorded and refused at SQLAlchemy's connect hook, so no server is needed.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from flask import Flask
from sqlalchemy import event

from app.adapter import LambdaHandler
from app.config import Settings, SettingsError
from app.storage import iam
from tests.support.engines import engine_of
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v2_event

ROOT = Path(__file__).resolve().parents[2]
HOST = "users.cluster-abc.us-east-1.rds.amazonaws.com"
URL = f"postgresql+psycopg://app_reader@{HOST}:5433/users"


@pytest.fixture(autouse=True)
def _fresh_clients() -> Iterator[None]:
    iam._clients.clear()
    yield
    iam._clients.clear()


def _query(token: str) -> dict[str, list[str]]:
    return parse_qs(token.split("?", 1)[1])


def test_iam_each_new_connection_gets_a_token_for_its_host_port_and_user(
    settings: Settings,
    make_app: Callable[[Settings], Flask],
    serve_app: Callable[[Flask], LambdaHandler],
    capsys: pytest.CaptureFixture[str],
) -> None:
    psycopg = pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed")
    # GIVEN a container with DB_IAM_AUTH whose connections are recorded, then refused
    application = make_app(replace(settings, database_url=URL, db_iam_auth=True, db_pool="null"))
    handler = serve_app(application)
    seen: list[dict[str, Any]] = []

    def record(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        seen.append(dict(cparams))
        raise psycopg.OperationalError("connection refused (recorded by the test)")

    event.listen(engine_of(application), "do_connect", record)

    # WHEN two requests each need a new connection
    statuses = [handler(make_v2_event(), FakeContext())["statusCode"] for _ in range(2)]

    # THEN each connection had its own token, presigned for this host, port and user, and TLS
    assert statuses == [503, 503]
    assert len(seen) >= 2
    tokens = [params["password"] for params in seen]
    for params, token in zip(seen, tokens, strict=True):
        assert params["sslmode"] == "require"
        assert token.startswith(f"{HOST}:5433/?")
        query = _query(token)
        assert query["Action"] == ["connect"]
        assert query["DBUser"] == ["app_reader"]
        assert query["X-Amz-Expires"] == ["900"]
        assert query["X-Amz-Credential"][0].endswith("/us-east-1/rds-db/aws4_request")
    # AND no token is in any log line
    out = capsys.readouterr().out
    assert out
    for token in tokens:
        assert token not in out
        assert _query(token)["X-Amz-Signature"][0] not in out


@pytest.mark.parametrize(("user", "action"), [("app_reader", "DbConnect"), ("admin", "DbConnectAdmin")])
def test_iam_dsql_host_gets_a_dsql_token(user: str, action: str) -> None:
    host = "abcdefghijklmnopqrstuvwxyz.dsql.eu-west-1.on.aws"

    token = iam.auth_token(host, 5432, user)

    assert token.startswith(f"{host}/?")
    query = _query(token)
    assert query["Action"] == [action]
    assert query["X-Amz-Credential"][0].endswith("/eu-west-1/dsql/aws4_request")


@pytest.mark.parametrize(
    ("url_mode", "expected"),
    [(None, "require"), ("disable", "require"), ("prefer", "require"), ("verify-full", "verify-full")],
)
def test_iam_requires_tls_unless_the_url_asks_for_stricter(url_mode: str | None, expected: str) -> None:
    assert iam.require_tls(url_mode) == expected


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        ({"DB_POOL_RECYCLE": "-1"}, "DB_POOL_RECYCLE must be from 1 to 840 seconds with DB_IAM_AUTH"),
        ({"DB_POOL_RECYCLE": "900"}, "DB_POOL_RECYCLE must be from 1 to 840 seconds with DB_IAM_AUTH"),
        ({"DATABASE_URL": "sqlite:///x.db"}, "DB_IAM_AUTH needs DATABASE_URL to be a PostgreSQL URL"),
        ({"DATABASE_URL": "postgresql+psycopg://u:pw@h/db"}, "DATABASE_URL must not hold one"),
        ({"DB_IAM_AUTH": "maybe"}, "DB_IAM_AUTH must be one of"),
    ],
)
def test_iam_settings_are_validated_at_cold_start(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DB_IAM_AUTH": "true", "DATABASE_URL": URL, **environ})

    assert message in str(raised.value)


def test_iam_setting_parsed() -> None:
    assert Settings.from_env({"DB_IAM_AUTH": "true", "DATABASE_URL": URL}).db_iam_auth is True
    assert Settings.from_env({"DATABASE_URL": URL}).db_iam_auth is False


def test_iam_off_imports_no_boto3(tmp_path: Path) -> None:
    pytest.importorskip("psycopg", reason="the PostgreSQL driver is not installed")
    probe = "import sys, handler; print(sorted(m for m in sys.modules if m.split('.')[0] in ('boto3', 'botocore')))"
    result = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={"DATABASE_URL": URL, "LOG_LEVEL": "WARNING", "PATH": os.environ["PATH"]},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )

    assert result.stdout.strip() == "[]"
