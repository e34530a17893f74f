"""The database URL from Secrets Manager or Parameter Store, read once per cold start.

A secret holds either a SQLAlchemy URL or the JSON Secrets Manager uses for RDS and
Aurora credentials (`engine`, `host`, `port`, `username`, `password`, `dbname`), from
which the URL is built with `URL.create`, so any character in the password is escaped
correctly. Every form of the secret is registered with `app.logs.redact` before it is
parsed, and no error raised here quotes it.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy.engine import URL

from app.config import Settings, check_database_driver, parse_database_url
from app.logs import redact
from app.storage import aws
from app.storage.urls import password_forms

__all__ = ["RDS_ENGINE_DRIVERS", "DatabaseSecretError", "fetch_database_url", "parse_database_secret"]

# RDS secret `engine` -> (SQLAlchemy drivername, default port, default database). The
# defaults are those of AWS's rotation templates. PostgreSQL engines only: the reads are
# written for PostgreSQL and SQLite (app/storage/queries.py), so a MySQL secret is refused.
RDS_ENGINE_DRIVERS: dict[str, tuple[str, int, str | None]] = {
    "postgres": ("postgresql+psycopg", 5432, "postgres"),
    "postgresql": ("postgresql+psycopg", 5432, "postgres"),
    "aurora-postgresql": ("postgresql+psycopg", 5432, "postgres"),
}
_REQUIRED_KEYS: tuple[str, ...] = ("engine", "host", "username", "password")
_MAX_PORT: int = 65535


class DatabaseSecretError(RuntimeError):
    """Raised at cold start when the database secret or parameter cannot be read or is not a database URL."""


def fetch_database_url(settings: Settings) -> tuple[URL, str] | None:
    """(URL, the setting it came from) when DATABASE_SECRET_ARN or DATABASE_URL_SSM_PARAMETER is set, else None."""
    if settings.database_secret_arn is not None:
        source = "DATABASE_SECRET_ARN"
        text = _read_secret(settings.database_secret_arn, source)
    elif settings.database_url_ssm_parameter is not None:
        source = "DATABASE_URL_SSM_PARAMETER"
        text = _read_parameter(settings.database_url_ssm_parameter, source)
    else:
        return None
    url = parse_database_secret(text, source)
    try:
        # The same check DATABASE_URL gets when the settings are read.
        check_database_driver(url)
    except ValueError as exc:
        raise DatabaseSecretError(f"{source}: the secret's database URL {exc}") from None
    return url, source


def parse_database_secret(text: str, source: str) -> URL:
    """The URL in `text`: a SQLAlchemy URL, or RDS secret JSON. Registers the secret for redaction first."""
    redact(text, text.strip())
    stripped = text.strip()
    if stripped.startswith(("{", "[")):
        try:
            data = json.loads(stripped)
        except ValueError:
            raise DatabaseSecretError(f"{source}: the secret looks like JSON but is not valid JSON") from None
        url = _url_from_rds_secret(data, source)
    else:
        try:
            url = parse_database_url(stripped)
        except ValueError:
            raise DatabaseSecretError(
                f"{source}: the secret is neither a SQLAlchemy database URL nor RDS secret JSON"
            ) from None
    redact(*password_forms(url))
    return url


def _url_from_rds_secret(data: Any, source: str) -> URL:
    if not isinstance(data, dict):
        raise DatabaseSecretError(f"{source}: the secret JSON must be an object")
    missing = [key for key in _REQUIRED_KEYS if not isinstance(data.get(key), str) or not data[key]]
    if missing:
        raise DatabaseSecretError(f"{source}: the secret JSON needs non-empty string keys: {', '.join(missing)}")
    password = data["password"]
    redact(password)
    engine = data["engine"]
    if engine not in RDS_ENGINE_DRIVERS:
        supported = ", ".join(sorted(RDS_ENGINE_DRIVERS))
        raise DatabaseSecretError(f"{source}: unsupported engine {engine!r}; supported: {supported}")
    drivername, default_port, default_database = RDS_ENGINE_DRIVERS[engine]
    database = data.get("dbname", default_database)
    if database is not None and not isinstance(database, str):
        raise DatabaseSecretError(f"{source}: the secret's 'dbname' must be a string")
    return URL.create(
        drivername,
        username=data["username"],
        password=password,
        host=data["host"],
        port=_port(data.get("port", default_port), source),
        database=database or None,
    )


def _port(value: object, source: str) -> int:
    # Rotation templates write the port as a number, the console as a string.
    if isinstance(value, int) and not isinstance(value, bool):
        port = value
    elif isinstance(value, str) and value.strip().isdigit():
        port = int(value)
    else:
        raise DatabaseSecretError(f"{source}: the secret's 'port' must be a number from 1 to {_MAX_PORT}")
    if not 1 <= port <= _MAX_PORT:
        raise DatabaseSecretError(f"{source}: the secret's 'port' must be a number from 1 to {_MAX_PORT}")
    return port


def _read_secret(arn: str, source: str) -> str:
    # The ARN names the region the secret lives in, which may not be the function's.
    secrets = aws.client("secretsmanager", region_name=_arn_region(arn))
    try:
        response = secrets.get_secret_value(SecretId=arn)
    except Exception as exc:
        raise _read_error(exc, source, arn) from None
    text = response.get("SecretString")
    if not isinstance(text, str):
        raise DatabaseSecretError(f"{source}: secret {arn} has no SecretString (binary secrets are not supported)")
    return text


def _read_parameter(name: str, source: str) -> str:
    ssm = aws.client("ssm", region_name=_arn_region(name) if name.startswith("arn:") else None)
    try:
        # A SecureString is decrypted with its KMS key; a String parameter comes back as is.
        response = ssm.get_parameter(Name=name, WithDecryption=True)
    except Exception as exc:
        raise _read_error(exc, source, name) from None
    value: str = response["Parameter"]["Value"]
    return value


def _read_error(exc: Exception, source: str, name: str) -> Exception:
    error = aws.describe_error(exc)
    if error is None:
        return exc
    return DatabaseSecretError(f"{source}: could not read {name}: {error.code}: {error.message}")


def _arn_region(arn: str) -> str:
    # arn:partition:service:region:account:resource
    return arn.split(":", 5)[3]
