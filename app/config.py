"""Settings: the one place that reads the environment.

Everything else receives a `Settings`. Values are parsed strictly at cold start, so a
typo fails the init with a message naming the variable instead of changing behaviour
quietly. An empty value counts as unset (serverless.yml's `${env:X, ''}` gives one).
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from sqlalchemy.engine import URL, make_url

__all__ = [
    "CORS_ANY_ORIGIN",
    "DEFAULT_BUNDLED_DB_PATH",
    "SETTINGS_KEY",
    "S3Location",
    "Settings",
    "SettingsError",
    "StartupError",
    "check_database_driver",
    "parse_database_url",
    "running_on_lambda",
]

# Key of the app's Settings in `Flask.extensions`.
SETTINGS_KEY: str = "settings"

DEFAULT_BUNDLED_DB_PATH: Path = Path(__file__).resolve().parent.parent / "data" / "users.db"
DEFAULT_SQLITE_COPY_NAME: str = "users.db"
POOL_KINDS: frozenset[str] = frozenset({"queue", "null"})
LOG_LEVELS: frozenset[str] = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
# "auto": text lines when stderr is a terminal, JSON lines otherwise (app/logs.py decides).
LOG_FORMATS: frozenset[str] = frozenset({"auto", "json", "text"})
_TRUE_VALUES: frozenset[str] = frozenset({"1", "true", "yes", "on"})
_FALSE_VALUES: frozenset[str] = frozenset({"0", "false", "no", "off"})
# serverless-wsgi 3.x treats exactly these as true (get_script_name) and anything else as false.
_SERVERLESS_WSGI_TRUE: frozenset[str] = frozenset({"yes", "y", "true", "t", "1"})
_SERVERLESS_WSGI_FALSE: frozenset[str] = frozenset({"no", "n", "false", "f", "0"})

# S3 bucket naming rules (general purpose buckets): 3-63 lowercase letters, digits, dots and
# hyphens, starting and ending with a letter or digit. Keys are 1-1024 bytes.
_S3_URI = re.compile(r"s3://(?P<bucket>[a-z0-9][a-z0-9.-]{1,61}[a-z0-9])/(?P<key>.+)", re.DOTALL)
_S3_KEY_MAX_BYTES: int = 1024
# arn:<partition>:<service>:<region>:<12-digit account>:<resource>
_SECRET_ARN = re.compile(
    r"arn:aws(?:-[a-z]+)*:secretsmanager:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:secret:[A-Za-z0-9/_+=.@-]+"
)
_SSM_PARAMETER_ARN = re.compile(r"arn:aws(?:-[a-z]+)*:ssm:[a-z]{2}(?:-[a-z]+)+-\d:\d{12}:parameter/[A-Za-z0-9/_.-]+")
_SSM_PARAMETER_NAME = re.compile(r"/?[A-Za-z0-9_.-]+(?:/[A-Za-z0-9_.-]+)*")
_SSM_PARAMETER_MAX_LENGTH: int = 2048
# CORS_ALLOW_ORIGINS's value for "any origin".
CORS_ANY_ORIGIN: str = "*"


# The documented ranges (README, Configuration), enforced at cold start.
MAX_POOL_SIZE: int = 100
MAX_OVERFLOW: int = 100
# Lambda's longest function timeout: a wait for a connection cannot usefully outlast it. Far
# below threading.TIMEOUT_MAX (~9.2e9 s on 64-bit Linux), above which QueuePool's wait raises
# OverflowError on every request that has to wait (DB_POOL_TIMEOUT=1e10 did).
MAX_POOL_TIMEOUT_SECONDS: float = 900.0
MAX_POOL_RECYCLE_SECONDS: int = 86_400
MAX_PAGE_LIMIT: int = 1_000_000
MAX_REFRESH_SECONDS: int = 86_400
# The drivers this project ships and tests: psycopg 3 (requirements-postgres.txt) and sqlite3.
POSTGRES_DRIVERNAME: str = "postgresql+psycopg"
_SUPPORTED_DRIVERNAMES: frozenset[str] = frozenset({POSTGRES_DRIVERNAME, "sqlite", "sqlite+pysqlite"})
# What Heroku, Render and most tools hand out, and SQLAlchemy's driverless form (psycopg2,
# which is not installed): both read as PostgreSQL through psycopg.
_POSTGRES_ALIASES: frozenset[str] = frozenset({"postgres", "postgresql"})
_SUPPORTED_URLS: str = "postgresql+psycopg://user:password@host:5432/db (or postgres://...) or sqlite:///path/users.db"
_POSTGRES_INSTALL: str = "pip install -r requirements-postgres.txt"
# API Gateway base path mappings: letters, digits, $-_.+!*'() in each of one or more segments.
_BASE_PATH = re.compile(r"[A-Za-z0-9$_.+!*'()-]+(?:/[A-Za-z0-9$_.+!*'()-]+)*")

_BAD_URL_MESSAGE: str = (
    "is not a valid SQLAlchemy database URL (percent-encode special characters in the user name "
    "and password: @ as %40, : as %3A, / as %2F)"
)


def parse_database_url(raw: str) -> URL:
    """`raw` as a URL, or ValueError with a message that never quotes it (it may hold a password).

    Besides what SQLAlchemy refuses (ArgumentError, or ValueError for a port it cannot read),
    an "@" after the one that ends the user name and password means an unencoded "@" in the
    password: SQLAlchemy would read part of the password as the host, port or database name,
    connect there and print it in every error and log line ("u:p@ss/w@db" reads host "ss").
    """
    try:
        url = make_url(raw)
    except Exception:
        raise ValueError(_BAD_URL_MESSAGE) from None
    if url.password is not None and raw.count("@", raw.find("://") + 3) > 1:
        raise ValueError(_BAD_URL_MESSAGE)
    if url.host is not None and "@" in url.host:
        raise ValueError(_BAD_URL_MESSAGE)
    if url.drivername in _POSTGRES_ALIASES:
        url = url.set(drivername=POSTGRES_DRIVERNAME)
    return url


def check_database_driver(url: URL) -> None:
    """ValueError, saying what to write or install, unless `url` is served by a driver this
    project ships and that driver can be imported. The message never quotes the URL.

    Imports the driver (psycopg for PostgreSQL), as the engine would a moment later anyway.
    """
    if url.drivername not in _SUPPORTED_DRIVERNAMES:
        raise ValueError(f"uses the unsupported dialect {url.drivername!r}; write {_SUPPORTED_URLS}")
    try:
        url.get_dialect().import_dbapi()
    except ImportError as exc:
        install = _POSTGRES_INSTALL if url.get_backend_name() == "postgresql" else f"install {exc.name}"
        raise ValueError(f"needs the {exc.name} driver, which is not installed: {install}") from None


def running_on_lambda(environ: Mapping[str, str] | None = None) -> bool:
    """Whether this process is a Lambda runtime (it has a Runtime API), not `make run` or `invoke local`."""
    return bool((os.environ if environ is None else environ).get("AWS_LAMBDA_RUNTIME_API"))


class StartupError(Exception):
    """A cold start that cannot go on for a reason its message says in one line (no traceback needed)."""

    def __init__(self, message: str) -> None:
        # ASCII: awslambdaric posts the init error as a latin-1 body, and a value quoted in the
        # message ("五") would make that post fail, and Lambda report no init error at all.
        super().__init__(message.encode("ascii", "backslashreplace").decode("ascii"))


def _is_serialised_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme not in ("http", "https") or not parts.hostname or "@" in parts.netloc:
        return False
    if parts.path or parts.query or parts.fragment or origin != origin.lower() or origin.endswith(":"):
        return False
    return port != {"http": 80, "https": 443}[parts.scheme]


class SettingsError(StartupError, ValueError):
    """Raised at cold start when an environment variable has a value we cannot use."""


@dataclass(frozen=True)
class S3Location:
    """An S3 object, parsed from `s3://bucket/key`."""

    bucket: str
    key: str

    @property
    def uri(self) -> str:
        return f"s3://{self.bucket}/{self.key}"


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Field defaults are the documented defaults (README, Configuration)."""

    # None: serve the bundled SQLite database, copied to `sqlite_copy_path` at cold start.
    # Not in repr: it may hold a password, and a repr ends up in tracebacks and test output.
    database_url: str | None = field(default=None, repr=False)
    bundled_db_path: Path = DEFAULT_BUNDLED_DB_PATH
    # Lambda's only writable directory (tempfile honours TMPDIR elsewhere).
    sqlite_copy_path: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / DEFAULT_SQLITE_COPY_NAME)
    pool_size: int = 5
    max_overflow: int = 10
    # Seconds to wait for a pooled connection before answering 503. Lambda serves one
    # request per container at a time, so waiting long only burns billed time.
    pool_timeout: float = 10.0
    # Seconds before a pooled connection is replaced: below the idle timeouts of NAT
    # gateways (350 s) and RDS Proxy (1800 s) that drop connections of frozen containers.
    pool_recycle: int = 300
    # Off: a read on a connection the server dropped is retried once on a new one
    # (app/storage/queries.read_with_reconnect), which covers what a ping per checkout would,
    # without its round trip on every warm request (docs/postgresql.md, measured).
    pool_pre_ping: bool = False
    log_level: str = "INFO"
    log_format: str = "auto"
    # Largest `limit` GET /users accepts. Pages are also cut by size (app/web/pages.py).
    max_page_limit: int = 10_000
    # Serve a SQLite snapshot downloaded from S3 at cold start instead of the bundled file.
    db_snapshot_s3_uri: S3Location | None = None
    # Seconds between checks for a newer snapshot on warm invocations; 0: never check.
    db_snapshot_refresh_seconds: int = 0
    # Read the database URL (or an RDS secret JSON) from Secrets Manager, or from a
    # Parameter Store parameter, once per cold start.
    database_secret_arn: str | None = None
    database_url_ssm_parameter: str | None = None
    # "queue": a QueuePool per container (default). "null": NullPool, a new connection per
    # request, for when something outside pools for us (RDS Proxy, PgBouncer).
    db_pool: str = "queue"
    # Set by Lambda (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start) when this init is snapshotted
    # for SnapStart: the runtime hooks then close and remake what must not be shared.
    snap_start: bool = False
    # Origins whose pages may call the API from a browser (CORS): exact serialised origins
    # (`https://app.example.com`), or `*` for any. Empty: CORS is off.
    cors_allow_origins: frozenset[str] = frozenset()
    # IAM database authentication (RDS, Aurora, RDS Proxy, Aurora DSQL): each new connection's
    # password is a fresh token, TLS is required, and pooled connections are recycled before
    # the token's 15 minutes are up (app/storage/iam.py).
    db_iam_auth: bool = False
    # The base path mapping of an API Gateway custom domain (API_GATEWAY_BASE_PATH: "api" for
    # https://example.com/api/users). serverless-wsgi also reads the variable itself, from
    # os.environ on every request: the same value on Lambda, whose environment is fixed.
    api_gateway_base_path: str | None = None

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse settings from `environ` (default: `os.environ`); raise SettingsError on bad values."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        default = cls()  # the field defaults above are the only place defaults are written
        settings = cls(
            database_url=reader.database_url("DATABASE_URL"),
            bundled_db_path=reader.path("BUNDLED_DB_PATH", default.bundled_db_path),
            sqlite_copy_path=reader.path("SQLITE_COPY_PATH", default.sqlite_copy_path),
            pool_size=reader.integer("DB_POOL_SIZE", default.pool_size, minimum=1, maximum=MAX_POOL_SIZE),
            max_overflow=reader.integer("DB_MAX_OVERFLOW", default.max_overflow, minimum=0, maximum=MAX_OVERFLOW),
            pool_timeout=reader.seconds("DB_POOL_TIMEOUT", default.pool_timeout, maximum=MAX_POOL_TIMEOUT_SECONDS),
            pool_recycle=reader.integer(
                "DB_POOL_RECYCLE", default.pool_recycle, minimum=-1, maximum=MAX_POOL_RECYCLE_SECONDS
            ),
            pool_pre_ping=bool(reader.boolean("DB_POOL_PRE_PING", default.pool_pre_ping)),
            log_level=reader.choice("LOG_LEVEL", default.log_level, LOG_LEVELS),
            log_format=reader.keyword("LOG_FORMAT", default.log_format, LOG_FORMATS),
            max_page_limit=reader.integer("MAX_PAGE_LIMIT", default.max_page_limit, minimum=1, maximum=MAX_PAGE_LIMIT),
            db_snapshot_s3_uri=reader.s3_location("DB_SNAPSHOT_S3_URI"),
            db_snapshot_refresh_seconds=reader.integer(
                "DB_SNAPSHOT_REFRESH_SECONDS",
                default.db_snapshot_refresh_seconds,
                minimum=0,
                maximum=MAX_REFRESH_SECONDS,
            ),
            database_secret_arn=reader.pattern("DATABASE_SECRET_ARN", _SECRET_ARN, "a Secrets Manager secret ARN"),
            database_url_ssm_parameter=reader.ssm_parameter("DATABASE_URL_SSM_PARAMETER"),
            db_pool=reader.keyword("DB_POOL", default.db_pool, POOL_KINDS),
            snap_start=env.get("AWS_LAMBDA_INITIALIZATION_TYPE") == "snap-start",
            cors_allow_origins=reader.origins("CORS_ALLOW_ORIGINS"),
            db_iam_auth=bool(reader.boolean("DB_IAM_AUTH", default.db_iam_auth)),
            api_gateway_base_path=reader.base_path("API_GATEWAY_BASE_PATH"),
        )
        # Read by serverless-wsgi itself on every request, not by us: validated here only, so
        # that a typo fails the cold start instead of quietly changing every URL.
        reader.serverless_wsgi_flag("STRIP_STAGE_PATH")
        _check_combinations(settings)
        return settings


def _check_combinations(settings: Settings) -> None:
    """Reject settings that are each valid but contradict one another."""
    sources = {
        "DATABASE_URL": settings.database_url,
        "DATABASE_SECRET_ARN": settings.database_secret_arn,
        "DATABASE_URL_SSM_PARAMETER": settings.database_url_ssm_parameter,
        "DB_SNAPSHOT_S3_URI": settings.db_snapshot_s3_uri,
    }
    chosen = [name for name, value in sources.items() if value is not None]
    if len(chosen) > 1:
        raise SettingsError(f"set only one of {', '.join(sources)}; got {' and '.join(chosen)}")
    if settings.db_snapshot_refresh_seconds > 0 and settings.db_snapshot_s3_uri is None:
        raise SettingsError("DB_SNAPSHOT_REFRESH_SECONDS needs DB_SNAPSHOT_S3_URI")
    if settings.db_iam_auth:
        _check_iam_auth(settings)


# A token opens connections for 15 minutes: pooled ones are replaced a minute before.
IAM_MAX_POOL_RECYCLE_SECONDS: int = 840


def _check_iam_auth(settings: Settings) -> None:
    if settings.db_snapshot_s3_uri is not None:
        raise SettingsError("DB_IAM_AUTH is for a PostgreSQL server, not DB_SNAPSHOT_S3_URI's SQLite snapshot")
    if settings.database_url is not None:
        url = parse_database_url(settings.database_url)
        if url.get_backend_name() != "postgresql" or not url.host or not url.username:
            raise SettingsError("DB_IAM_AUTH needs DATABASE_URL to be a PostgreSQL URL with a user name and a host")
        if url.password:
            raise SettingsError("DB_IAM_AUTH makes the password a token: DATABASE_URL must not hold one")
    if not 0 < settings.pool_recycle <= IAM_MAX_POOL_RECYCLE_SECONDS:
        raise SettingsError(
            f"DB_POOL_RECYCLE must be from 1 to {IAM_MAX_POOL_RECYCLE_SECONDS} seconds with DB_IAM_AUTH "
            f"(IAM tokens last 15 minutes); got {settings.pool_recycle}"
        )


class _Reader:
    """Strict parsers for one environment mapping; every error names its variable."""

    def __init__(self, env: Mapping[str, str]) -> None:
        self._env = env

    def _raw(self, name: str) -> str | None:
        value = self._env.get(name, "").strip()
        return value or None

    def database_url(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        try:
            check_database_driver(parse_database_url(raw))
        except ValueError as exc:
            raise SettingsError(f"{name} {exc}") from None
        return raw

    def path(self, name: str, default: Path) -> Path:
        raw = self._raw(name)
        return default if raw is None else Path(raw)

    def integer(self, name: str, default: int, *, minimum: int, maximum: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        message = f"{name} must be an integer from {minimum} to {maximum}, got {raw!r}"
        # ASCII digits only: int() also takes "1_000", "+5" and non-ASCII digits.
        digits = raw.removeprefix("-")
        if not (digits.isascii() and digits.isdigit()):
            raise SettingsError(message)
        try:
            value = int(raw)
        except ValueError:  # more digits than int() reads (4,300): far out of range anyway
            raise SettingsError(message) from None
        if not minimum <= value <= maximum:
            raise SettingsError(message)
        return value

    def seconds(self, name: str, default: float, *, maximum: float) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        message = f"{name} must be a number of seconds > 0 and <= {maximum:g}, got {raw!r}"
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(message) from None
        if not 0 < value <= maximum:  # also refuses nan and inf
            raise SettingsError(message)
        return value

    def boolean(self, name: str, default: bool | None) -> bool | None:
        raw = self._raw(name)
        if raw is None:
            return default
        lowered = raw.lower()
        if lowered in _TRUE_VALUES:
            return True
        if lowered in _FALSE_VALUES:
            return False
        accepted = ", ".join(sorted(_TRUE_VALUES | _FALSE_VALUES))
        raise SettingsError(f"{name} must be one of {accepted}; got {raw!r}")

    def serverless_wsgi_flag(self, name: str) -> None:
        """Check a flag serverless-wsgi reads itself, against the words it reads (not ours: "on" is false there)."""
        raw = self._raw(name)
        if raw is None or raw.strip().lower() in _SERVERLESS_WSGI_TRUE | _SERVERLESS_WSGI_FALSE:
            return
        accepted = ", ".join(sorted(_SERVERLESS_WSGI_TRUE | _SERVERLESS_WSGI_FALSE))
        raise SettingsError(f"{name} must be one of {accepted}; got {raw!r}")

    def choice(self, name: str, default: str, choices: frozenset[str]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.upper() not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(sorted(choices))}; got {raw!r}")
        return raw.upper()

    def keyword(self, name: str, default: str, choices: frozenset[str]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.lower() not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(sorted(choices))}; got {raw!r}")
        return raw.lower()

    def base_path(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        # serverless-wsgi prefixes the value with "/" itself: "/api" would become "//api".
        if raw.startswith("/") or raw.endswith("/"):
            raise SettingsError(f"{name} must be given without leading or trailing '/', e.g. 'api'; got {raw!r}")
        # serverless-wsgi uses the value unstripped: " api" would be a prefix no path has.
        if _BASE_PATH.fullmatch(raw) is None or self._env.get(name, "") != raw:
            raise SettingsError(
                f"{name} must be an API Gateway base path mapping (letters, digits, $-_.+!*'() "
                f"in segments joined by '/'), e.g. 'api' or 'v1/users'; got {self._env.get(name, '')!r}"
            )
        return raw

    def origins(self, name: str) -> frozenset[str]:
        raw = self._raw(name)
        if raw is None:
            return frozenset()
        origins = [item.strip() for item in raw.split(",")]
        if origins == [CORS_ANY_ORIGIN]:
            return frozenset(origins)
        for origin in origins:
            # Browsers send the serialised origin (RFC 6454 §6.2): scheme, host in lower case,
            # no default port, no path. Anything else would never match: refuse it here.
            if not _is_serialised_origin(origin):
                raise SettingsError(
                    f"{name} must be '*' or a comma-separated list of origins like "
                    f"https://app.example.com or http://localhost:8080 (no path, no trailing '/'); got {origin!r}"
                )
        return frozenset(origins)

    def s3_location(self, name: str) -> S3Location | None:
        raw = self._raw(name)
        if raw is None:
            return None
        match = _S3_URI.fullmatch(raw)
        if match is None or ".." in match["bucket"] or match["key"].endswith("/"):
            raise SettingsError(f"{name} must be an S3 object URI like s3://bucket-name/path/users.db; got {raw!r}")
        if len(match["key"].encode()) > _S3_KEY_MAX_BYTES:
            raise SettingsError(f"{name} has a key longer than {_S3_KEY_MAX_BYTES} bytes")
        return S3Location(bucket=match["bucket"], key=match["key"])

    def pattern(self, name: str, pattern: re.Pattern[str], what: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        if pattern.fullmatch(raw) is None:
            raise SettingsError(f"{name} must be {what}; got {raw!r}")
        return raw

    def ssm_parameter(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        pattern = _SSM_PARAMETER_ARN if raw.startswith("arn:") else _SSM_PARAMETER_NAME
        if len(raw) > _SSM_PARAMETER_MAX_LENGTH or pattern.fullmatch(raw) is None:
            raise SettingsError(
                f"{name} must be a Parameter Store parameter name (e.g. /users-api/database-url) or ARN; got {raw!r}"
            )
        return raw
