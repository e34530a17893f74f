"""Settings: the one place that reads the environment.

Everything else receives a `Settings`. Values are parsed strictly at cold start, so a
typo fails the init with a message naming the variable instead of changing behaviour
quietly. An empty value counts as unset (serverless.yml's `${env:X, ''}` gives one).
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError

__all__ = ["DEFAULT_BUNDLED_DB_PATH", "SETTINGS_KEY", "Settings", "SettingsError"]

# Key of the app's Settings in `Flask.extensions`.
SETTINGS_KEY: str = "settings"

DEFAULT_BUNDLED_DB_PATH: Path = Path(__file__).resolve().parent.parent / "data" / "users.db"
DEFAULT_SQLITE_COPY_NAME: str = "users.db"
LOG_LEVELS: frozenset[str] = frozenset({"DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"})
_TRUE_VALUES: frozenset[str] = frozenset({"1", "true", "yes", "on"})
_FALSE_VALUES: frozenset[str] = frozenset({"0", "false", "no", "off"})


class SettingsError(ValueError):
    """Raised at cold start when an environment variable has a value we cannot use."""


@dataclass(frozen=True)
class Settings:
    """Runtime configuration. Field defaults are the documented defaults (README, Configuration)."""

    # None: serve the bundled SQLite database, copied to `sqlite_copy_path` at cold start.
    database_url: str | None = None
    bundled_db_path: Path = DEFAULT_BUNDLED_DB_PATH
    sqlite_copy_path: Path = Path("/tmp") / DEFAULT_SQLITE_COPY_NAME
    pool_size: int = 5
    max_overflow: int = 10
    # Seconds to wait for a pooled connection before answering 503. Lambda serves one
    # request per container at a time, so waiting long only burns billed time.
    pool_timeout: float = 10.0
    # Seconds before a pooled connection is replaced: below the idle timeouts of NAT
    # gateways (350 s) and RDS Proxy (1800 s) that drop connections of frozen containers.
    pool_recycle: int = 300
    # None: on for network databases, off for SQLite (a local file cannot drop a connection).
    pool_pre_ping: bool | None = None
    log_level: str = "INFO"
    # Read by serverless-wsgi itself on every request; validated here so a typo fails the init.
    strip_stage_path: bool = False
    api_gateway_base_path: str | None = None
    # Largest `limit` GET /users accepts. Pages are also cut by size (app/response_limits.py).
    max_page_limit: int = 10_000

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Settings:
        """Parse settings from `environ` (default: `os.environ`); raise SettingsError on bad values."""
        env = os.environ if environ is None else environ
        reader = _Reader(env)
        return cls(
            database_url=reader.database_url("DATABASE_URL"),
            bundled_db_path=reader.path("BUNDLED_DB_PATH", DEFAULT_BUNDLED_DB_PATH),
            sqlite_copy_path=reader.path("SQLITE_COPY_PATH", Path(tempfile.gettempdir()) / DEFAULT_SQLITE_COPY_NAME),
            pool_size=reader.integer("DB_POOL_SIZE", 5, minimum=1),
            max_overflow=reader.integer("DB_MAX_OVERFLOW", 10, minimum=0),
            pool_timeout=reader.positive_float("DB_POOL_TIMEOUT", 10.0),
            pool_recycle=reader.integer("DB_POOL_RECYCLE", 300, minimum=-1),
            pool_pre_ping=reader.boolean("DB_POOL_PRE_PING", None),
            log_level=reader.choice("LOG_LEVEL", "INFO", LOG_LEVELS),
            strip_stage_path=bool(reader.boolean("STRIP_STAGE_PATH", False)),
            api_gateway_base_path=reader.base_path("API_GATEWAY_BASE_PATH"),
            max_page_limit=reader.integer("MAX_PAGE_LIMIT", 10_000, minimum=1),
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
            make_url(raw)
        except ArgumentError:
            # Never echo the value: it may hold a password.
            raise SettingsError(f"{name} is not a valid SQLAlchemy database URL") from None
        return raw

    def path(self, name: str, default: Path) -> Path:
        raw = self._raw(name)
        return default if raw is None else Path(raw)

    def integer(self, name: str, default: int, *, minimum: int) -> int:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise SettingsError(f"{name} must be an integer >= {minimum}, got {raw!r}") from None
        if value < minimum:
            raise SettingsError(f"{name} must be an integer >= {minimum}, got {raw!r}")
        return value

    def positive_float(self, name: str, default: float) -> float:
        raw = self._raw(name)
        if raw is None:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name} must be a number of seconds > 0, got {raw!r}") from None
        if not value > 0 or value == float("inf"):
            raise SettingsError(f"{name} must be a number of seconds > 0, got {raw!r}")
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

    def choice(self, name: str, default: str, choices: frozenset[str]) -> str:
        raw = self._raw(name)
        if raw is None:
            return default
        if raw.upper() not in choices:
            raise SettingsError(f"{name} must be one of {', '.join(sorted(choices))}; got {raw!r}")
        return raw.upper()

    def base_path(self, name: str) -> str | None:
        raw = self._raw(name)
        if raw is None:
            return None
        # serverless-wsgi prefixes the value with "/" itself: "/api" would become "//api".
        if raw.startswith("/") or raw.endswith("/"):
            raise SettingsError(f"{name} must be given without leading or trailing '/', e.g. 'api'; got {raw!r}")
        return raw
