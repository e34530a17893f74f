"""JSON log lines: one object per line, invocation fields, no secrets."""

from __future__ import annotations

import json
import logging

import pytest
from sqlalchemy.engine import make_url

from app.db import safe_url
from app.logs import LOGGER_NAME, JsonFormatter, configure_logging, current_invocation, log_fields


def test_logs_are_single_line_json_with_invocation_fields(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO")
    current_invocation.request_id, current_invocation.cold_start = "req-1", True
    try:
        try:
            raise ValueError("boom\nsecond line")
        except ValueError:
            logger.exception("it failed", extra={"fields": {"path": "/users", "name": "Zoë"}})
    finally:
        current_invocation.request_id = current_invocation.cold_start = None

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    entry = json.loads(lines[0])
    assert entry["level"] == "ERROR"
    assert entry["message"] == "it failed"
    assert (entry["request_id"], entry["cold_start"]) == ("req-1", True)
    assert (entry["path"], entry["name"]) == ("/users", "Zoë")
    assert "ValueError: boom" in entry["exception"]
    assert entry["time"].endswith("Z")


def test_logs_configured_once_and_not_propagated() -> None:
    configure_logging("INFO")
    configure_logging("WARNING")

    logger = logging.getLogger(LOGGER_NAME)
    assert len([handler for handler in logger.handlers if isinstance(handler.formatter, JsonFormatter)]) == 1
    assert logger.propagate is False
    assert logger.level == logging.WARNING
    configure_logging("INFO")


def test_logs_database_url_is_masked() -> None:
    url = make_url("postgresql+psycopg://app:s3cr3t@db.internal:5432/users")

    assert safe_url(url) == "postgresql+psycopg://app:***@db.internal:5432/users"


@pytest.mark.parametrize(
    ("created", "expected"),
    [
        pytest.param(1795543200.125, "2026-11-24T18:00:00.125Z", id="first-second"),
        pytest.param(1795543200.875, "2026-11-24T18:00:00.875Z", id="same-second"),
        pytest.param(1795543261.0625, "2026-11-24T18:01:01.062Z", id="next-minute"),
        pytest.param(1795543200.5, "2026-11-24T18:00:00.500Z", id="back-again"),
    ],
)
def test_logs_time_is_utc_with_milliseconds(created: float, expected: str) -> None:
    record = logging.LogRecord("app", logging.INFO, "", 0, "message", (), None)
    record.created, record.msecs = created, (created - int(created)) * 1000

    assert json.loads(JsonFormatter().format(record))["time"] == expected


def test_logs_fields_line_respects_the_level(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO")
    child = logging.getLogger(f"{LOGGER_NAME}.test")
    try:
        log_fields(child, logging.INFO, "counted", {"status": 200, "path": "/users"})
        logger.setLevel(logging.WARNING)
        log_fields(child, logging.INFO, "silenced", {"status": 200})
    finally:
        configure_logging("INFO")

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(line["message"], line["logger"], line["status"], line["path"]) for line in lines] == [
        ("counted", "app.test", 200, "/users")
    ]
