"""DATABASE_URL from Secrets Manager or Parameter Store (moto): URL or RDS JSON, read once, never logged."""

from __future__ import annotations

import json
import logging
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

import boto3
import pytest
from botocore.stub import Stubber
from flask import Flask
from sqlalchemy.engine import make_url

from app.adapter import make_handler
from app.config import Settings
from app.logs import LOGGER_NAME, configure_logging
from app.storage import aws
from app.storage.secret import DatabaseSecretError, fetch_database_url, parse_database_secret
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import make_v2_event
from tests.support.logs import log_lines
from tests.support.tables import MakeUsersDb

PASSWORD = 'p@ss:w/rd %?#&=+ "x" \\ Zoë'
RDS_SECRET = {
    "engine": "postgres",
    "host": "users.cluster-abc.eu-west-1.rds.amazonaws.com",
    "port": 5432,
    "username": "users_api",
    "password": PASSWORD,
    "dbname": "users",
    "dbInstanceIdentifier": "users-1",
}
SOURCE = "DATABASE_SECRET_ARN"


# --- parsing ------------------------------------------------------------------------------


def test_parse_database_secret_plain_url() -> None:
    url = parse_database_secret("  postgresql+psycopg://app:pw@db.internal:6432/users?sslmode=require\n", SOURCE)

    assert url == make_url("postgresql+psycopg://app:pw@db.internal:6432/users?sslmode=require")


def test_parse_database_secret_rds_json_escapes_the_password() -> None:
    url = parse_database_secret(json.dumps(RDS_SECRET), SOURCE)

    assert (url.drivername, url.username, url.password) == ("postgresql+psycopg", "users_api", PASSWORD)
    assert (url.host, url.port, url.database) == (RDS_SECRET["host"], 5432, "users")
    # The rendered URL (what SQLAlchemy hands the driver) parses back to the same password.
    assert make_url(url.render_as_string(hide_password=False)).password == PASSWORD


@pytest.mark.parametrize(
    ("changes", "expected"),
    [
        pytest.param({"port": "6543"}, ("postgresql+psycopg", 6543, "users"), id="port-as-string"),
        pytest.param({"port": None, "dbname": None}, ("postgresql+psycopg", 5432, "postgres"), id="postgres-defaults"),
        pytest.param({"engine": "aurora-postgresql"}, ("postgresql+psycopg", 5432, "users"), id="aurora-postgresql"),
    ],
)
def test_parse_database_secret_rds_json_engines_and_defaults(
    changes: dict[str, Any], expected: tuple[str, int, str | None]
) -> None:
    secret = {key: value for key, value in {**RDS_SECRET, **changes}.items() if value is not None}

    url = parse_database_secret(json.dumps(secret), SOURCE)

    assert (url.drivername, url.port, url.database) == expected


@pytest.mark.parametrize(
    ("text", "message"),
    [
        pytest.param(
            "not a url " + PASSWORD,
            "DATABASE_SECRET_ARN: the secret is neither a SQLAlchemy database URL nor RDS secret JSON",
            id="not-a-url",
        ),
        pytest.param(
            '{"password": "' + PASSWORD,
            "DATABASE_SECRET_ARN: the secret looks like JSON but is not valid JSON",
            id="broken-json",
        ),
        pytest.param(
            json.dumps({"password": PASSWORD, "host": "db"}),
            "DATABASE_SECRET_ARN: the secret JSON needs non-empty string keys: engine, username",
            id="missing-keys",
        ),
        pytest.param(
            json.dumps({**RDS_SECRET, "engine": "oracle"}),
            "DATABASE_SECRET_ARN: unsupported engine 'oracle'; supported: aurora-postgresql, postgres, postgresql",
            id="unsupported-engine",
        ),
        pytest.param(
            json.dumps({**RDS_SECRET, "port": "54x2"}),
            "DATABASE_SECRET_ARN: the secret's 'port' must be a number from 1 to 65535",
            id="bad-port",
        ),
        pytest.param(
            json.dumps({**RDS_SECRET, "port": 70000}),
            "DATABASE_SECRET_ARN: the secret's 'port' must be a number from 1 to 65535",
            id="port-out-of-range",
        ),
        pytest.param(
            json.dumps({**RDS_SECRET, "dbname": 5}),
            "DATABASE_SECRET_ARN: the secret's 'dbname' must be a string",
            id="bad-dbname",
        ),
    ],
)
def test_parse_database_secret_rejects_bad_secret_without_quoting_it(text: str, message: str) -> None:
    with pytest.raises(DatabaseSecretError) as raised:
        parse_database_secret(text, SOURCE)

    assert str(raised.value) == message
    printed = "".join(traceback.format_exception(raised.value))  # what the runtime prints on a failed init
    assert PASSWORD not in printed
    assert json.dumps(PASSWORD)[1:-1] not in printed


def test_parse_database_secret_rejects_json_array() -> None:
    with pytest.raises(DatabaseSecretError, match="^DATABASE_SECRET_ARN: the secret JSON must be an object$"):
        parse_database_secret(json.dumps([RDS_SECRET]), SOURCE)


# --- reading from AWS (moto) --------------------------------------------------------------


@pytest.fixture
def secret_settings(settings: Settings) -> Callable[..., Settings]:
    return lambda **changes: replace(settings, **changes)


@pytest.fixture
def secrets_client(aws: None) -> Any:
    return boto3.client("secretsmanager", region_name="us-east-1")


@pytest.fixture
def ssm_client(aws: None) -> Any:
    return boto3.client("ssm", region_name="us-east-1")


def test_fetch_database_url_from_rds_secret_json(secrets_client: Any, secret_settings: Callable[..., Settings]) -> None:
    arn = secrets_client.create_secret(Name="users-api/db", SecretString=json.dumps(RDS_SECRET))["ARN"]

    fetched = fetch_database_url(secret_settings(database_secret_arn=arn))

    assert fetched is not None
    url, source = fetched
    assert source == "DATABASE_SECRET_ARN"
    assert (url.drivername, url.host, url.password) == ("postgresql+psycopg", RDS_SECRET["host"], PASSWORD)


def test_fetch_database_url_refuses_a_driver_this_project_does_not_ship(
    secrets_client: Any, secret_settings: Callable[..., Settings]
) -> None:
    # GIVEN a secret holding the URL of a MySQL database (mysql+pymysql: not shipped)
    password = "not-in-any-message"
    url = f"mysql+pymysql://users_api:{password}@{RDS_SECRET['host']}:3306/users"
    arn = secrets_client.create_secret(Name="users-api/mysql", SecretString=url)["ARN"]

    # WHEN the cold start reads it
    with pytest.raises(DatabaseSecretError) as raised:
        fetch_database_url(secret_settings(database_secret_arn=arn))

    # THEN it fails in one line that names the setting and the dialect, as DATABASE_URL would
    message = str(raised.value)
    assert message.startswith(
        "DATABASE_SECRET_ARN: the secret's database URL uses the unsupported dialect 'mysql+pymysql'"
    )
    assert password not in message
    assert str(RDS_SECRET["host"]) not in message


def test_fetch_database_url_reads_secret_in_the_region_of_its_arn(
    aws: None, secret_settings: Callable[..., Settings]
) -> None:
    # The function runs in us-east-1 (the fixtures' region); the secret lives in eu-west-1.
    secrets = boto3.client("secretsmanager", region_name="eu-west-1")
    arn = secrets.create_secret(Name="users-api/db", SecretString="sqlite:////tmp/eu.db")["ARN"]

    fetched = fetch_database_url(secret_settings(database_secret_arn=arn))

    assert fetched is not None
    assert fetched[0].database == "/tmp/eu.db"


def test_fetch_database_url_from_ssm_secure_string(ssm_client: Any, secret_settings: Callable[..., Settings]) -> None:
    ssm_client.put_parameter(
        Name="/users-api/prod/database-url",
        Value="postgresql+psycopg://app:" + "s3cr3t%40x" + "@db.internal/users",
        Type="SecureString",
    )

    fetched = fetch_database_url(secret_settings(database_url_ssm_parameter="/users-api/prod/database-url"))

    assert fetched is not None
    url, source = fetched
    assert source == "DATABASE_URL_SSM_PARAMETER"
    assert (url.host, url.password) == ("db.internal", "s3cr3t@x")


def test_fetch_database_url_unset_is_none_and_never_imports_a_client(
    secret_settings: Callable[..., Settings], aws_calls: Counter[str]
) -> None:
    assert fetch_database_url(secret_settings()) is None
    assert sum(aws_calls.values()) == 0


def test_fetch_database_url_missing_secret_fails_clearly(aws: None, secret_settings: Callable[..., Settings]) -> None:
    arn = "arn:aws:secretsmanager:us-east-1:123456789012:secret:users-api/nope-AbCdEf"

    with pytest.raises(DatabaseSecretError) as raised:
        fetch_database_url(secret_settings(database_secret_arn=arn))

    assert str(raised.value).startswith(f"DATABASE_SECRET_ARN: could not read {arn}: ResourceNotFoundException: ")


def test_fetch_database_url_missing_parameter_fails_clearly(
    aws: None, secret_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(DatabaseSecretError) as raised:
        fetch_database_url(secret_settings(database_url_ssm_parameter="/users-api/nope"))

    assert str(raised.value).startswith("DATABASE_URL_SSM_PARAMETER: could not read /users-api/nope: ParameterNotFound")


def test_fetch_database_url_binary_secret_is_refused(
    secrets_client: Any, secret_settings: Callable[..., Settings]
) -> None:
    arn = secrets_client.create_secret(Name="users-api/db", SecretBinary=b"\x00\x01")["ARN"]

    with pytest.raises(DatabaseSecretError, match="has no SecretString"):
        fetch_database_url(secret_settings(database_secret_arn=arn))


@pytest.fixture
def access_denied(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every Secrets Manager and SSM call answers AccessDeniedException, as AWS does (HTTP 400, JSON protocol).

    moto's IAM simulation answers these JSON-protocol services with an XML 403 that real AWS
    never sends, so botocore's Stubber injects the real error shape instead.
    """
    stubbers: list[Stubber] = []
    real_client = aws.client

    def denying_client(service_name: str, **options: Any) -> Any:
        client = real_client(service_name, **options)
        stubber = Stubber(client)
        operation = {"secretsmanager": "get_secret_value", "ssm": "get_parameter"}[service_name]
        stubber.add_client_error(
            operation,
            service_error_code="AccessDeniedException",
            service_message=f"User: arn:aws:sts::123456789012:assumed-role/users-api is not authorized to perform: {operation}",
            http_status_code=400,
        )
        stubber.activate()
        stubbers.append(stubber)
        return client

    monkeypatch.setattr(aws, "client", denying_client)
    yield
    for stubber in stubbers:
        stubber.assert_no_pending_responses()


@pytest.mark.parametrize(
    ("changes", "prefix"),
    [
        pytest.param(
            {"database_secret_arn": "arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf"},
            "DATABASE_SECRET_ARN: could not read arn:aws:secretsmanager:us-east-1:123456789012:secret:db-AbCdEf: "
            "AccessDeniedException: User: ",
            id="secrets-manager",
        ),
        pytest.param(
            {"database_url_ssm_parameter": "/users-api/url"},
            "DATABASE_URL_SSM_PARAMETER: could not read /users-api/url: AccessDeniedException: User: ",
            id="ssm",
        ),
    ],
)
def test_fetch_database_url_access_denied_fails_clearly(
    access_denied: None, changes: dict[str, str], prefix: str, secret_settings: Callable[..., Settings]
) -> None:
    with pytest.raises(DatabaseSecretError) as raised:
        fetch_database_url(secret_settings(**changes))

    assert str(raised.value).startswith(prefix)


# --- through the app and handler ----------------------------------------------------------


def test_handler_serves_database_named_by_secret_read_once(
    secrets_client: Any,
    make_users_db: MakeUsersDb,
    secret_settings: Callable[..., Settings],
    make_app: Callable[..., Flask],
    aws_calls: Counter[str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    db_path = make_users_db(["Kim", "Lee"])
    arn = secrets_client.create_secret(Name="users-api/db", SecretString=f"sqlite:///{db_path}")["ARN"]
    handler = make_handler(make_app(secret_settings(database_secret_arn=arn)))

    responses = [handler(make_v2_event(), FakeContext()) for _ in range(3)]

    assert [(r["statusCode"], r["body"]) for r in responses] == [(200, "Kim,Lee")] * 3
    assert aws_calls["GetSecretValue"] == 1
    initialised = next(line for line in log_lines(capsys.readouterr().out) if line["message"] == "app initialised")
    assert initialised["database_source"] == "DATABASE_SECRET_ARN"


def test_parse_database_secret_masks_the_password_in_later_logs(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    url = parse_database_secret(json.dumps(RDS_SECRET), SOURCE)

    # A driver error quoting the URL, or a careless message quoting the password: both masked.
    logging.getLogger(f"{LOGGER_NAME}.test").error("cannot reach %s", url.render_as_string(hide_password=False))
    logging.getLogger(f"{LOGGER_NAME}.test").error("password was %s", PASSWORD)

    out = capsys.readouterr().out
    assert PASSWORD not in out
    assert json.dumps(PASSWORD)[1:-1] not in out
    assert [line["message"] for line in log_lines(out)] == ["***", "***"]  # whole values, never substrings


def test_create_app_secret_failure_fails_the_cold_start(
    aws: None, secret_settings: Callable[..., Settings], make_app: Callable[..., Flask]
) -> None:
    # Unlike the S3 snapshot there is nothing to serve without the URL, and a missing secret
    # or permission is a deploy error: fail the init loudly, as a bad setting does.
    with pytest.raises(DatabaseSecretError, match="ResourceNotFoundException"):
        make_app(secret_settings(database_secret_arn="arn:aws:secretsmanager:us-east-1:123456789012:secret:nope-x"))
