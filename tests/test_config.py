"""Settings.from_env: defaults, strict parsing, errors that name the variable."""

from __future__ import annotations

from pathlib import Path

import pytest

from app.config import DEFAULT_BUNDLED_DB_PATH, Settings, SettingsError


def test_settings_defaults_from_empty_environment(tmp_path: Path) -> None:
    settings = Settings.from_env({"TMPDIR": str(tmp_path)})

    assert settings.database_url is None
    assert settings.bundled_db_path == DEFAULT_BUNDLED_DB_PATH
    assert settings.bundled_db_path.parent.name == "data"
    assert (settings.pool_size, settings.max_overflow) == (5, 10)
    assert (settings.pool_timeout, settings.pool_recycle, settings.pool_pre_ping) == (10.0, 300, None)
    assert settings.log_level == "INFO"
    assert (settings.strip_stage_path, settings.api_gateway_base_path) == (False, None)
    assert settings.max_page_limit == 10_000


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
        strip_stage_path=True,
        api_gateway_base_path="api",
        max_page_limit=500,
    )


def test_settings_empty_values_count_as_unset() -> None:
    settings = Settings.from_env({"DATABASE_URL": "", "DB_POOL_SIZE": "  ", "LOG_LEVEL": ""})

    assert (settings.database_url, settings.pool_size, settings.log_level) == (None, 5, "INFO")


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("DB_POOL_SIZE", "five", "DB_POOL_SIZE must be an integer >= 1, got 'five'"),
        ("DB_POOL_SIZE", "0", "DB_POOL_SIZE must be an integer >= 1, got '0'"),
        ("DB_MAX_OVERFLOW", "-1", "DB_MAX_OVERFLOW must be an integer >= 0, got '-1'"),
        ("DB_POOL_RECYCLE", "1h", "DB_POOL_RECYCLE must be an integer >= -1, got '1h'"),
        ("DB_POOL_TIMEOUT", "0", "DB_POOL_TIMEOUT must be a number of seconds > 0, got '0'"),
        ("DB_POOL_TIMEOUT", "nan", "DB_POOL_TIMEOUT must be a number of seconds > 0, got 'nan'"),
        ("DB_POOL_TIMEOUT", "inf", "DB_POOL_TIMEOUT must be a number of seconds > 0, got 'inf'"),
        ("DB_POOL_PRE_PING", "ture", "DB_POOL_PRE_PING must be one of 0, 1, false, no, off, on, true, yes; got 'ture'"),
        ("STRIP_STAGE_PATH", "y", "STRIP_STAGE_PATH must be one of 0, 1, false, no, off, on, true, yes; got 'y'"),
        ("MAX_PAGE_LIMIT", "0", "MAX_PAGE_LIMIT must be an integer >= 1, got '0'"),
        ("MAX_PAGE_LIMIT", "lots", "MAX_PAGE_LIMIT must be an integer >= 1, got 'lots'"),
        ("LOG_LEVEL", "verbose", "LOG_LEVEL must be one of CRITICAL, DEBUG, ERROR, INFO, WARNING; got 'verbose'"),
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


def test_settings_bad_database_url_error_hides_the_value() -> None:
    with pytest.raises(SettingsError) as raised:
        Settings.from_env({"DATABASE_URL": "not a url with p4ssw0rd"})

    assert str(raised.value) == "DATABASE_URL is not a valid SQLAlchemy database URL"


def test_settings_error_fails_cold_start_import(tmp_path: Path) -> None:
    import subprocess
    import sys

    result = subprocess.run(
        [sys.executable, "-c", "import handler"],
        env={"DB_POOL_SIZE": "lots", "SQLITE_COPY_PATH": str(tmp_path / "users.db"), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )

    assert result.returncode != 0
    assert "SettingsError: DB_POOL_SIZE must be an integer >= 1, got 'lots'" in result.stderr
