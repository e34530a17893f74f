"""Settings.from_env: defaults, strict parsing, errors that name the variable."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, cast

import pytest
from sqlalchemy.pool import QueuePool

from app.config import (
    DEFAULT_BUNDLED_DB_PATH,
    MAX_POOL_TIMEOUT_SECONDS,
    S3Location,
    Settings,
    SettingsError,
    parse_database_url,
)

if TYPE_CHECKING:
    from sqlalchemy.engine.interfaces import DBAPIConnection

ROOT = Path(__file__).resolve().parent.parent

SECRET_ARN = "arn:aws:secretsmanager:eu-west-1:123456789012:secret:users-api/db-AbCdEf"


def test_settings_defaults_from_empty_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"TMPDIR": str(tmp_path)})

    assert settings.database_url is None
    assert settings.bundled_db_path == DEFAULT_BUNDLED_DB_PATH
    assert settings.bundled_db_path.parent.name == "data"
    assert (settings.pool_size, settings.max_overflow) == (5, 10)
    assert (settings.pool_timeout, settings.pool_recycle, settings.pool_pre_ping) == (10.0, 300, False)
    assert settings.log_level == "INFO"
    assert settings.db_pool == "queue"
    assert settings.max_page_limit == 10_000
    assert (settings.db_snapshot_s3_uri, settings.db_snapshot_refresh_seconds) == (None, 0)
    assert (settings.database_secret_arn, settings.database_url_ssm_parameter) == (None, None)
    assert settings.api_gateway_base_path is None


def test_settings_reads_every_variable() -> None:
    settings = Settings.from_env(
        {
            "DATABASE_URL": "postgresql+psycopg://app:pw@db.internal:5432/users",
            "BUNDLED_DB_PATH": "/var/task/data/other.db",
            "SQLITE_COPY_PATH": "/tmp/other.db",
            "DB_POOL_SIZE": "2",
            "DB_MAX_OVERFLOW": "0",
            "DB_POOL_TIMEOUT": "2.5",
            "DB_POOL_RECYCLE": "-1",
            "DB_POOL_PRE_PING": "off",
            "LOG_LEVEL": "debug",
            "STRIP_STAGE_PATH": "yes",
            "API_GATEWAY_BASE_PATH": "api",
            "MAX_PAGE_LIMIT": "500",
            "DB_POOL": "Null",
        }
    )

    assert settings == Settings(
        database_url="postgresql+psycopg://app:pw@db.internal:5432/users",
        bundled_db_path=Path("/var/task/data/other.db"),
        sqlite_copy_path=Path("/tmp/other.db"),
        pool_size=2,
        max_overflow=0,
        pool_timeout=2.5,
        pool_recycle=-1,
        pool_pre_ping=False,
        log_level="DEBUG",
        max_page_limit=500,
        db_pool="null",
        api_gateway_base_path="api",
    )


def test_settings_empty_values_count_as_unset() -> None:
    settings = Settings.from_env({"DATABASE_URL": "", "DB_POOL_SIZE": "  ", "LOG_LEVEL": ""})

    assert (settings.database_url, settings.pool_size, settings.log_level) == (None, 5, "INFO")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DB_POOL_SIZE", "five", "DB_POOL_SIZE must be an integer from 1 to 100, got 'five'"),
        ("DB_POOL_SIZE", "0", "DB_POOL_SIZE must be an integer from 1 to 100, got '0'"),
        ("DB_MAX_OVERFLOW", "-1", "DB_MAX_OVERFLOW must be an integer from 0 to 100, got '-1'"),
        ("DB_POOL_RECYCLE", "1h", "DB_POOL_RECYCLE must be an integer from -1 to 86400, got '1h'"),
        ("DB_POOL_TIMEOUT", "0", "DB_POOL_TIMEOUT must be a number of seconds > 0 and <= 900, got '0'"),
        ("DB_POOL_TIMEOUT", "nan", "DB_POOL_TIMEOUT must be a number of seconds > 0 and <= 900, got 'nan'"),
        ("DB_POOL_TIMEOUT", "inf", "DB_POOL_TIMEOUT must be a number of seconds > 0 and <= 900, got 'inf'"),
        # Above threading.TIMEOUT_MAX, every request waiting for a connection got OverflowError (a 500).
        ("DB_POOL_TIMEOUT", "1e10", "DB_POOL_TIMEOUT must be a number of seconds > 0 and <= 900, got '1e10'"),
        ("DB_POOL_TIMEOUT", "901", "DB_POOL_TIMEOUT must be a number of seconds > 0 and <= 900, got '901'"),
        ("DB_POOL_SIZE", "101", "DB_POOL_SIZE must be an integer from 1 to 100, got '101'"),
        ("DB_POOL_SIZE", "+5", "DB_POOL_SIZE must be an integer from 1 to 100, got '+5'"),
        ("DB_POOL_SIZE", "1_0", "DB_POOL_SIZE must be an integer from 1 to 100, got '1_0'"),
        ("DB_POOL_SIZE", "9" * 5000, f"DB_POOL_SIZE must be an integer from 1 to 100, got {'9' * 5000!r}"),
        ("DB_MAX_OVERFLOW", "101", "DB_MAX_OVERFLOW must be an integer from 0 to 100, got '101'"),
        ("DB_POOL_RECYCLE", "-2", "DB_POOL_RECYCLE must be an integer from -1 to 86400, got '-2'"),
        ("DB_POOL_RECYCLE", "86401", "DB_POOL_RECYCLE must be an integer from -1 to 86400, got '86401'"),
        ("MAX_PAGE_LIMIT", "1000001", "MAX_PAGE_LIMIT must be an integer from 1 to 1000000, got '1000001'"),
        (
            "DB_SNAPSHOT_REFRESH_SECONDS",
            "86401",
            "DB_SNAPSHOT_REFRESH_SECONDS must be an integer from 0 to 86400, got '86401'",
        ),
        ("DB_POOL_PRE_PING", "ture", "DB_POOL_PRE_PING must be one of 0, 1, false, no, off, on, true, yes; got 'ture'"),
        # serverless-wsgi reads "on" as false: accepting it would quietly keep the stage in every URL.
        ("STRIP_STAGE_PATH", "on", "STRIP_STAGE_PATH must be one of 0, 1, f, false, n, no, t, true, y, yes; got 'on'"),
        ("MAX_PAGE_LIMIT", "0", "MAX_PAGE_LIMIT must be an integer from 1 to 1000000, got '0'"),
        ("MAX_PAGE_LIMIT", "lots", "MAX_PAGE_LIMIT must be an integer from 1 to 1000000, got 'lots'"),
        ("DB_POOL", "static", "DB_POOL must be one of null, queue; got 'static'"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of CRITICAL, DEBUG, ERROR, INFO, WARNING; got 'verbose'"),
        (
            "DB_SNAPSHOT_REFRESH_SECONDS",
            "-1",
            "DB_SNAPSHOT_REFRESH_SECONDS must be an integer from 0 to 86400, got '-1'",
        ),
        (
            "DB_SNAPSHOT_REFRESH_SECONDS",
            "5m",
            "DB_SNAPSHOT_REFRESH_SECONDS must be an integer from 0 to 86400, got '5m'",
        ),
        ("LOG_FORMAT", "pretty", "LOG_FORMAT must be one of auto, json, text; got 'pretty'"),
        *[
            (
                "DB_SNAPSHOT_S3_URI",
                uri,
                f"DB_SNAPSHOT_S3_URI must be an S3 object URI like s3://bucket-name/path/users.db; got {uri!r}",
            )
            for uri in (
                "https://bucket.s3.amazonaws.com/users.db",
                "s3://bucket",
                "s3://bucket/",
                "s3://bucket/snapshots/",
                "s3://Bucket/users.db",
                "s3://my_bucket/users.db",
                "s3://ab/users.db",
                "s3://my..bucket/users.db",
                "s3:/bucket/users.db",
            )
        ],
        *[
            ("DATABASE_SECRET_ARN", arn, f"DATABASE_SECRET_ARN must be a Secrets Manager secret ARN; got {arn!r}")
            for arn in (
                "users-api/db",
                "arn:aws:secretsmanager:eu-west-1:1234:secret:db",
                "arn:aws:ssm:eu-west-1:123456789012:secret:db",
                "arn:aws:secretsmanager:eu-west-1:123456789012:db",
            )
        ],
        *[
            (
                "DATABASE_URL_SSM_PARAMETER",
                name,
                "DATABASE_URL_SSM_PARAMETER must be a Parameter Store parameter name (e.g. /users-api/database-url) "
                f"or ARN; got {name!r}",
            )
            for name in ("/users api/url", "/users-api//url", "arn:aws:ssm:eu-west-1:123456789012:param/x")
        ],
        (
            "API_GATEWAY_BASE_PATH",
            "/api",
            "API_GATEWAY_BASE_PATH must be given without leading or trailing '/', e.g. 'api'; got '/api'",
        ),
    ],
)
def test_settings_rejects_bad_value_naming_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({name: value})

    assert str(raised.value) == message


BAD_URL_MESSAGE = (
    "DATABASE_URL is not a valid SQLAlchemy database URL (percent-encode special characters in the user name "
    "and password: @ as %40, : as %3A, / as %2F)"
)


@pytest.mark.parametrize(
    "url",
    [
        pytest.param("not a url with p4ssw0rd", id="not-a-url"),
        # SQLAlchemy reads password "p" and host "ssw0rd@127.0.0.1": the rest would be in every error.
        pytest.param("postgresql+psycopg://postgres:p@ssw0rd@127.0.0.1:5432/db", id="unencoded-at"),
        # ValueError from the port, quoting the password, where only ArgumentError was caught.
        pytest.param("postgresql+psycopg://postgres:p@ss:w0rd1@127.0.0.1:5432/db", id="unencoded-colon"),
        # SQLAlchemy reads host "ss" and database "w0rd@127.0.0.1:5432/db" (or a query): no "@" in the host.
        pytest.param("postgresql+psycopg://postgres:p@ss/w0rd@127.0.0.1:5432/db", id="unencoded-at-then-slash"),
        pytest.param("postgresql+psycopg://postgres:p@ss?w0rd@127.0.0.1:5432/db", id="unencoded-at-then-query"),
    ],
)
def test_settings_bad_database_url_error_hides_the_value(url: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": url})

    assert str(raised.value) == BAD_URL_MESSAGE


def test_settings_percent_encoded_password_is_accepted() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql+psycopg://postgres:p%40ss%2Fw0rd@db:5432/app"})

    url = parse_database_url(str(settings.database_url))
    assert (url.password, url.host, url.database) == ("p@ss/w0rd", "db", "app")


# What a local run (`make run`, `invoke local`: no Lambda Runtime API) prints for a bad setting.
LOCAL_FAILURES = [
    pytest.param({"DB_POOL_SIZE": "lots"}, "DB_POOL_SIZE must be an integer from 1 to 100, got 'lots'", id="integer"),
    pytest.param(
        {"DB_POOL_TIMEOUT": "1e10"},
        "DB_POOL_TIMEOUT must be a number of seconds > 0 and <= 900, got '1e10'",
        id="pool-timeout-overflow",
    ),
    pytest.param(
        {"DATABASE_URL": "mysql://app:Hunter2Secret@db/users"},
        "DATABASE_URL uses the unsupported dialect 'mysql'; write postgresql+psycopg://user:password@host:5432/db "
        "(or postgres://...) or sqlite:///path/users.db",
        id="unsupported-dialect",
    ),
    pytest.param(
        {"SQLITE_COPY_PATH": "{tmp}/a-file/users.db"},
        "SQLITE_COPY_PATH '{tmp}/a-file/users.db' cannot be written (File exists): "
        "set it to a file in a writable directory (on Lambda, under /tmp)",
        id="copy-path-unwritable",
    ),
    pytest.param(
        {"API_GATEWAY_BASE_PATH": "api/"},
        "API_GATEWAY_BASE_PATH must be given without leading or trailing '/', e.g. 'api'; got 'api/'",
        id="base-path",
    ),
]


@pytest.mark.parametrize("how", ["import handler", "python handler.py"])
@pytest.mark.parametrize(("environ", "message"), LOCAL_FAILURES)
def test_settings_error_is_one_line_without_traceback_locally(
    how: str, environ: dict[str, str], message: str, tmp_path: Path
) -> None:
    (tmp_path / "a-file").write_text("not a directory")
    env = {"SQLITE_COPY_PATH": str(tmp_path / "users.db"), "PATH": "/usr/bin:/bin"}
    env |= {name: value.replace("{tmp}", str(tmp_path)) for name, value in environ.items()}
    command = [sys.executable, "-c", "import handler"] if how == "import handler" else [sys.executable, "handler.py"]

    result = subprocess.run(command, env=env, capture_output=True, text=True, cwd=ROOT, timeout=60, check=False)

    assert (result.returncode, result.stdout) == (1, "")
    assert result.stderr == f"users-api: {message.replace('{tmp}', str(tmp_path))}\n"
    assert "Hunter2Secret" not in result.stderr


@pytest.mark.parametrize(
    ("environ", "expected"),
    [
        pytest.param(
            {"DB_SNAPSHOT_S3_URI": "s3://users-api.snapshots/prod/2026 users.db", "DB_SNAPSHOT_REFRESH_SECONDS": "300"},
            {
                "db_snapshot_s3_uri": S3Location(bucket="users-api.snapshots", key="prod/2026 users.db"),
                "db_snapshot_refresh_seconds": 300,
            },
            id="s3-snapshot",
        ),
        pytest.param({"DATABASE_SECRET_ARN": SECRET_ARN}, {"database_secret_arn": SECRET_ARN}, id="secret-arn"),
        pytest.param(
            {"DATABASE_SECRET_ARN": "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db-x1"},
            {"database_secret_arn": "arn:aws-us-gov:secretsmanager:us-gov-west-1:123456789012:secret:db-x1"},
            id="secret-arn-govcloud",
        ),
        pytest.param(
            {"DATABASE_URL_SSM_PARAMETER": "/users-api/prod/database-url"},
            {"database_url_ssm_parameter": "/users-api/prod/database-url"},
            id="ssm-name",
        ),
        pytest.param(
            {"DATABASE_URL_SSM_PARAMETER": "arn:aws:ssm:eu-west-1:123456789012:parameter/users-api/url"},
            {"database_url_ssm_parameter": "arn:aws:ssm:eu-west-1:123456789012:parameter/users-api/url"},
            id="ssm-arn",
        ),
    ],
)
def test_settings_reads_aws_variables(environ: dict[str, str], expected: dict[str, object]) -> None:
    settings = Settings.from_env(environ)

    assert {name: getattr(settings, name) for name in expected} == expected


def test_settings_s3_location_renders_its_uri() -> None:
    assert S3Location(bucket="b-1", key="a/b.db").uri == "s3://b-1/a/b.db"


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        pytest.param(
            {"DATABASE_URL": "sqlite:///x.db", "DATABASE_SECRET_ARN": SECRET_ARN},
            "set only one of DATABASE_URL, DATABASE_SECRET_ARN, DATABASE_URL_SSM_PARAMETER, DB_SNAPSHOT_S3_URI; "
            "got DATABASE_URL and DATABASE_SECRET_ARN",
            id="url-and-secret",
        ),
        pytest.param(
            {"DATABASE_URL_SSM_PARAMETER": "/a/b", "DB_SNAPSHOT_S3_URI": "s3://bucket/users.db"},
            "set only one of DATABASE_URL, DATABASE_SECRET_ARN, DATABASE_URL_SSM_PARAMETER, DB_SNAPSHOT_S3_URI; "
            "got DATABASE_URL_SSM_PARAMETER and DB_SNAPSHOT_S3_URI",
            id="parameter-and-snapshot",
        ),
        pytest.param(
            {"DB_SNAPSHOT_REFRESH_SECONDS": "60"},
            "DB_SNAPSHOT_REFRESH_SECONDS needs DB_SNAPSHOT_S3_URI",
            id="refresh-without-snapshot",
        ),
    ],
)
def test_settings_rejects_contradicting_variables(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env(environ)

    assert str(raised.value) == message


def test_settings_refresh_zero_without_snapshot_is_accepted() -> None:
    assert Settings.from_env({"DB_SNAPSHOT_REFRESH_SECONDS": "0"}).db_snapshot_refresh_seconds == 0


def test_settings_repr_hides_database_url() -> None:
    settings = Settings.from_env({"DATABASE_URL": "postgresql+psycopg://app:s3cr3t@db/users"})

    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(
    ("value", "stripped"),
    [(v, True) for v in ("1", "true", "T", "yes", "y", " Yes ")] + [(v, False) for v in ("0", "false", "f", "no", "N")],
)
def test_settings_strip_stage_path_accepts_what_serverless_wsgi_reads_the_same_way(
    value: str, stripped: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    import serverless_wsgi

    Settings.from_env({"STRIP_STAGE_PATH": value})  # accepted

    monkeypatch.setenv("STRIP_STAGE_PATH", value)
    script_name = serverless_wsgi.get_script_name({"Host": "abc.execute-api.us-east-1.amazonaws.com"}, {"stage": "dev"})
    assert script_name == ("" if stripped else "/dev")


@pytest.mark.parametrize(
    "raw",
    [
        "postgres://app:pw@db.internal:5432/users",  # Heroku, Render and most tools
        "postgresql://app:pw@db.internal:5432/users",  # SQLAlchemy's default driver, psycopg2, is not shipped
        "postgresql+psycopg://app:pw@db.internal:5432/users",
    ],
)
def test_settings_postgres_urls_are_served_by_psycopg(raw: str) -> None:
    settings = Settings.from_env({"DATABASE_URL": raw})

    url = parse_database_url(str(settings.database_url))
    assert (url.drivername, url.host, url.password, url.database) == (
        "postgresql+psycopg",
        "db.internal",
        "pw",
        "users",
    )


@pytest.mark.parametrize(
    ("raw", "dialect"),
    [
        ("mysql://app:Hunter2Secret@db/users", "mysql"),
        ("mysql+pymysql://app:Hunter2Secret@db/users", "mysql+pymysql"),
        ("foo://app:Hunter2Secret@db/users", "foo"),
        ("postgresql+asyncpg://app:Hunter2Secret@db/users", "postgresql+asyncpg"),
        ("postgresql+psycopg2://app:Hunter2Secret@db/users", "postgresql+psycopg2"),
    ],
)
def test_settings_unsupported_dialect_names_database_url_and_what_to_write(raw: str, dialect: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": raw})

    assert str(raised.value) == (
        f"DATABASE_URL uses the unsupported dialect {dialect!r}; write "
        "postgresql+psycopg://user:password@host:5432/db (or postgres://...) or sqlite:///path/users.db"
    )


@pytest.mark.parametrize("scheme", ["postgres", "postgresql+psycopg"])
def test_settings_missing_driver_says_what_to_install(scheme: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)  # what `import psycopg` does when it is not installed

    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": f"{scheme}://app:Hunter2Secret@db/users"})

    assert str(raised.value) == (
        "DATABASE_URL needs the psycopg driver, which is not installed: pip install -r requirements-postgres.txt"
    )


def test_settings_pool_timeout_bound_is_below_what_queue_pool_can_wait() -> None:
    # Past threading.TIMEOUT_MAX, a checkout that has to wait raises OverflowError: the 500s
    # DB_POOL_TIMEOUT=1e10 gave. The documented maximum is far below it, and accepted.
    pool = QueuePool(
        cast("Callable[[], DBAPIConnection]", lambda: sqlite3.connect(":memory:")),
        pool_size=1,
        max_overflow=0,
        timeout=1e10,
    )
    held = pool.connect()
    try:
        with pytest.raises(OverflowError):
            pool.connect()
    finally:
        held.close()
        pool.dispose()  # closes the sqlite3 connection (else a ResourceWarning in a later test)
    assert threading.TIMEOUT_MAX > MAX_POOL_TIMEOUT_SECONDS
    assert Settings.from_env({"DB_POOL_TIMEOUT": "900"}).pool_timeout == MAX_POOL_TIMEOUT_SECONDS


@pytest.mark.parametrize("value", [" api", "api path", "api//v1", "api?x=1", "api#x"])
def test_settings_base_path_must_be_a_base_path_mapping(value: str) -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"API_GATEWAY_BASE_PATH": value})

    assert str(raised.value).startswith("API_GATEWAY_BASE_PATH must be an API Gateway base path mapping")


@pytest.mark.parametrize("value", ["api", "v1", "api/v2", "$api_1.x"])
def test_settings_base_path_accepts_mappings(value: str) -> None:
    assert Settings.from_env({"API_GATEWAY_BASE_PATH": value}).api_gateway_base_path == value


@pytest.mark.parametrize(("raw", "expected"), [(None, "auto"), ("", "auto"), ("TEXT", "text"), ("json", "json")])
def test_config_log_format(raw: str | None, expected: str) -> None:
    assert Settings.from_env({} if raw is None else {"LOG_FORMAT": raw}).log_format == expected
