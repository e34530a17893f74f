"""Log lines: one JSON object (or one readable text line) per record, invocation fields, no secrets."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

import pytest
from sqlalchemy.engine import make_url

from app.logs import (
    LOGGER_NAME,
    MAX_ROTATING_SECRETS,
    MIN_SECRET_IN_TEXT,
    JsonFormatter,
    configure_logging,
    current_invocation,
    forget_redactions,
    redact,
    write_invocation_line,
)
from app.storage.urls import password_forms, safe_url


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


def test_logs_password_query_parameters_are_masked_and_registered() -> None:
    # libpq reads password= and sslpassword= from the query as well as from the user info.
    url = make_url("postgresql+psycopg://app@db/users?password=qp1&sslpassword=qp2&sslpassword=qp3&sslmode=require")

    assert safe_url(url) == "postgresql+psycopg://app@db/users?password=%2A%2A%2A&sslmode=require&sslpassword=%2A%2A%2A"
    assert {"qp1", "qp2", "qp3"} <= set(password_forms(url))


PASSWORD = 'p@ss:w/rd %?#&=+ "quoted" \\ Zoë'


def test_logs_mask_every_value_holding_a_registered_secret_whole(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO")
    url = make_url("postgresql+psycopg://app@db.internal/users").set(password=PASSWORD)
    redact(*password_forms(url))
    rendered = url.render_as_string(hide_password=False)
    try:
        raise RuntimeError(f"could not connect to {rendered}")
    except RuntimeError:
        logger.exception(f"failed with {PASSWORD}", extra={"fields": {"url": rendered, "nested": {"pw": PASSWORD}}})

    out = capsys.readouterr().out
    entry = json.loads(out)
    assert PASSWORD not in out
    assert json.dumps(PASSWORD)[1:-1] not in out  # nor its JSON-escaped form
    assert PASSWORD not in json.dumps(entry, ensure_ascii=False)
    # Whole values are replaced, never a substring of the line: it stays JSON whatever the secret.
    assert (entry["message"], entry["url"], entry["nested"], entry["exception"]) == ("***", "***", {"pw": "***"}, "***")
    assert entry["level"] == "ERROR"


def test_logs_mask_percent_encoded_password(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO")
    redact(*password_forms(make_url("postgresql://app:x@db/users").set(password="a b/c")))

    logger.info("dsn host=db password=a%20b%2Fc and a+b%2Fc")

    assert json.loads(capsys.readouterr().out)["message"] == "***"


@pytest.mark.parametrize("secret", ["0", "2", "ok", "app", "hunter2"])
def test_logs_short_secret_masks_only_equal_values_and_keeps_json(
    secret: str, capsys: pytest.CaptureFixture[str]
) -> None:
    # A one-character password used to turn `"status": 200` into `"status": 2***` in every line.
    logger = configure_logging("INFO")
    redact(secret)

    logger.info("status 200 ok", extra={"fields": {"status": 200, "pw": secret, "note": f"x{secret}x"}})
    write_invocation_line(
        logger, source="alb", method="GET", path="/users", status=200, duration_ms=0.5, pool=(5, 0, 0)
    )

    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [line["status"] for line in lines] == [200, 200]
    assert lines[0]["pw"] == "***"
    assert lines[0]["level"] == "INFO"
    if len(secret) < MIN_SECRET_IN_TEXT:
        assert (lines[0]["message"], lines[0]["note"]) == ("status 200 ok", f"x{secret}x")


def test_logs_forget_redactions_unmasks(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO")
    redact("hunter2")
    forget_redactions()

    logger.info("hunter2")

    assert json.loads(capsys.readouterr().out)["message"] == "hunter2"


def test_logs_rotating_secrets_keep_only_the_newest(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a lasting secret, then more rotating ones (IAM tokens) than are kept
    logger = configure_logging("INFO")
    tokens = [f"token-{number:04d}-signature" for number in range(MAX_ROTATING_SECRETS + 10)]
    try:
        redact("lasting-password")
        for token in tokens:
            redact(token, rotating=True)

        # WHEN each is logged
        logger.info("lines", extra={"fields": {"lasting": "lasting-password", "tokens": tokens}})
    finally:
        forget_redactions()

    # THEN the lasting secret and the newest tokens are masked; the oldest, long expired, are not
    line = json.loads(capsys.readouterr().out)
    assert line["lasting"] == "***"
    assert line["tokens"][-MAX_ROTATING_SECRETS:] == ["***"] * MAX_ROTATING_SECRETS
    assert line["tokens"][:10] == tokens[:10]


def test_logs_empty_secret_is_ignored(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO")
    redact("")

    logger.info("nothing to hide")

    assert json.loads(capsys.readouterr().out)["message"] == "nothing to hide"


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


@pytest.mark.parametrize(
    ("method", "path", "status", "request_id", "cold_start"),
    [
        pytest.param("GET", "/users", 200, "req-1", True, id="plain"),
        pytest.param("POST", '/a "quoted"\n\\path/Zoë/💥', 405, None, False, id="escapes"),
        pytest.param(None, None, None, "r", None, id="nulls"),
    ],
)
@pytest.mark.parametrize(
    ("pool", "pool_fields"),
    [
        pytest.param((5, 1, 2), {"pool_size": 5, "pool_checked_out": 1, "pool_overflow": 2}, id="queue-pool"),
        pytest.param("NullPool", {"pool": "NullPool"}, id="other-pool"),
        pytest.param(None, {}, id="no-engine"),
    ],
)
def test_logs_invocation_line_matches_formatter(
    method: str | None,
    path: str | None,
    status: int | None,
    request_id: str | None,
    cold_start: bool | None,
    pool: tuple[int, int, int] | str | None,
    pool_fields: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("INFO")
    logger = logging.getLogger(f"{LOGGER_NAME}.invocation")
    current_invocation.request_id, current_invocation.cold_start = request_id, cold_start
    try:
        write_invocation_line(
            logger, source="apigw-rest", method=method, path=path, status=status, duration_ms=1.25, pool=pool
        )
        generic = {"source": "apigw-rest", "method": method, "path": path, "status": status, "duration_ms": 1.25}
        logger.info("invocation", extra={"fields": {**generic, **pool_fields}})
    finally:
        current_invocation.request_id = current_invocation.cold_start = None

    fast, reference = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert list(fast) == list(reference)
    assert {k: v for k, v in fast.items() if k != "time"} == {k: v for k, v in reference.items() if k != "time"}
    assert fast["path"] == path


def test_logs_invocation_line_masks_and_respects_level(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("INFO")
    logger = logging.getLogger(f"{LOGGER_NAME}.invocation")
    redact("s3cr3t")
    try:
        write_invocation_line(
            logger, source="alb", method="GET", path="/s3cr3t", status=404, duration_ms=0.5, pool=(5, 0, 0)
        )
        configure_logging("WARNING")
        write_invocation_line(
            logger, source="alb", method="GET", path="/x", status=404, duration_ms=0.5, pool=(5, 0, 0)
        )
    finally:
        forget_redactions()
        configure_logging("INFO")

    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert json.loads(lines[0])["path"] == "***"


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


def test_logs_invocation_line_reaches_added_handlers(capsys: pytest.CaptureFixture[str]) -> None:
    # An error tracker (Sentry, say) adds a handler: the line must reach it, as the same JSON.
    package = configure_logging("INFO", "json")
    logger = logging.getLogger(f"{LOGGER_NAME}.invocation")
    collect = _Collect()
    line = {"source": "alb", "method": "GET", "path": "/users", "status": 200, "duration_ms": 0.5, "pool": "NullPool"}
    write_invocation_line(logger, **line)  # type: ignore[arg-type]
    package.addHandler(collect)
    try:
        write_invocation_line(logger, **line)  # type: ignore[arg-type]
    finally:
        package.removeHandler(collect)

    fast, through_logger = (json.loads(out) for out in capsys.readouterr().out.splitlines())
    assert len(collect.records) == 1
    collected = json.loads(JsonFormatter().format(collect.records[0]))
    for entry in (through_logger, collected):
        assert {k: v for k, v in entry.items() if k != "time"} == {k: v for k, v in fast.items() if k != "time"}


def test_logs_text_format_is_one_readable_line_and_traceback_lines(capsys: pytest.CaptureFixture[str]) -> None:
    logger = configure_logging("INFO", "text")
    invocation = logging.getLogger(f"{LOGGER_NAME}.invocation")
    redact("s3cr3t")
    current_invocation.request_id, current_invocation.cold_start = "req-1", False
    try:
        try:
            raise ValueError("boom")
        except ValueError:
            logger.exception("it failed", extra={"fields": {"name": "Zoë Smith", "pw": "s3cr3t", "none": None}})
        write_invocation_line(
            invocation, source="local", method="GET", path="/users", status=200, duration_ms=1.5, pool=(5, 1, 0)
        )
    finally:
        current_invocation.request_id = current_invocation.cold_start = None
        forget_redactions()
        configure_logging("INFO", "json")

    lines = capsys.readouterr().out.splitlines()
    assert re.fullmatch(
        r'\d\d:\d\d:\d\d\.\d{3} ERROR app it failed request_id=req-1 cold_start=false name="Zoë Smith" pw=\*\*\*',
        lines[0],
    )
    assert lines[1] == "Traceback (most recent call last):"
    assert lines[-2] == "ValueError: boom"
    assert lines[-1].endswith(
        " INFO  app.invocation invocation request_id=req-1 cold_start=false source=local method=GET path=/users"
        " status=200 duration_ms=1.5 pool_size=5 pool_checked_out=1 pool_overflow=0"
    )


@pytest.mark.parametrize(("terminal", "expected"), [(True, "TextFormatter"), (False, "JsonFormatter")])
def test_logs_auto_format_is_text_only_on_a_terminal(
    terminal: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    class Stderr:
        def isatty(self) -> bool:
            return terminal

    monkeypatch.setattr("sys.stderr", Stderr())
    try:
        logger = configure_logging("INFO", "auto")
        ours = [handler for handler in logger.handlers if type(handler).__name__ == "_StdoutHandler"]
        assert [type(handler.formatter).__name__ for handler in ours] == [expected]
    finally:
        configure_logging("INFO", "json")
