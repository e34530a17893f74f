"""Logging on stdout: JSON lines, the format CloudWatch Logs ingests and Logs Insights queries,
or readable text lines for a person at a terminal (LOG_FORMAT, docs/logs.md).

Every line carries the current invocation's request id and cold-start flag, so the
lines of one invocation can be found together. Structured fields are passed as
`extra={"fields": {...}}`. Secrets registered with `redact` (a database password read
from Secrets Manager, say) are masked in every line, whatever carried them there.
"""

from __future__ import annotations

import json
import logging
import sys
import time
from collections import deque
from collections.abc import Callable
from functools import lru_cache
from typing import Any

__all__ = [
    "LOGGER_NAME",
    "MAX_ROTATING_SECRETS",
    "REDACTED",
    "JsonFormatter",
    "TextFormatter",
    "configure_logging",
    "current_invocation",
    "forget_redactions",
    "redact",
    "write_init_error",
    "write_invocation_line",
]

LOGGER_NAME: str = "app"
REDACTED: str = "***"

# A secret shorter than this masks only values equal to it: found inside other text, "0" or
# "pw" would mask half of every line, while a value holding a longer one is replaced whole.
MIN_SECRET_IN_TEXT: int = 4

# Short-lived secrets kept for masking: an IAM auth token opens connections for 15 minutes,
# and a new one is made for each connection; the newest this many cover far more than that.
MAX_ROTATING_SECRETS: int = 64

# The registered secrets: every one given to `redact`, then the newest rotating ones.
_secrets: list[str] = []
_lasting: list[str] = []
_rotating: deque[str] = deque(maxlen=MAX_ROTATING_SECRETS)


def redact(*secrets: str, rotating: bool = False) -> None:
    """Mask, from now on, every log value that is or holds one of `secrets` (empty strings are ignored).

    Masking replaces the whole value (a field, the message, a traceback) by "***", never a
    substring of the line, so a short secret cannot break a line's JSON. It is the safety net:
    the code never puts a secret in a log line to begin with (URLs are rendered without
    their password, a URL that cannot be parsed is never echoed). `rotating`: secrets that
    expire and keep being replaced (IAM tokens); only the newest MAX_ROTATING_SECRETS are
    kept, so a container that lives for days does not check every line against thousands.
    """
    kept = _rotating if rotating else _lasting
    kept.extend(secret for secret in secrets if secret and secret not in kept)
    _secrets[:] = [*_lasting, *(secret for secret in _rotating if secret not in _lasting)]


def forget_redactions() -> None:
    """Forget every registered secret (tests; a process keeps its secrets for life)."""
    _secrets.clear()
    _lasting.clear()
    _rotating.clear()


def _masked(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _masked(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_masked(item) for item in value]
    if not isinstance(value, str):
        return value
    for secret in _secrets:
        if value == secret or (len(secret) >= MIN_SECRET_IN_TEXT and secret in value):
            return REDACTED
    return value


# json.dumps builds a new encoder on every call that passes options: build ours once.
_encode_json = json.JSONEncoder(default=str, ensure_ascii=False).encode
# The C string encoder behind it (ensure_ascii=False): a str in, a quoted JSON string out.
_encode_string: Callable[[str], str] = json.encoder.encode_basestring


class _CurrentInvocation:
    """What every log line says about the invocation being served (one at a time per process)."""

    __slots__ = ("cold_start", "request_id")

    def __init__(self) -> None:
        self.request_id: str | None = None
        self.cold_start: bool | None = None


current_invocation = _CurrentInvocation()


def _entry(created: float, level: str, logger: str, message: str, fields: dict[str, Any] | None) -> dict[str, Any]:
    """One log line's keys: the common ones, then `fields`, registered secrets masked."""
    entry: dict[str, Any] = {
        "time": f"{_utc_second(int(created))}.{int((created % 1) * 1000):03d}Z",
        "level": level,
        "logger": logger,
        "message": message,
        "request_id": current_invocation.request_id,
        "cold_start": current_invocation.cold_start,
    }
    if fields:
        entry.update(fields)
    if _secrets:
        entry = {key: _masked(value) for key, value in entry.items()}
    return entry


def _json_line(created: float, level: str, logger: str, message: str, fields: dict[str, Any] | None) -> str:
    """One log line as JSON."""
    return _encodable(_encode_json(_entry(created, level, logger, message, fields)))


def _encodable(line: str) -> str:
    """`line`, or the same JSON with non-ASCII escaped when it holds what UTF-8 cannot encode.

    A lone surrogate (valid in a JSON event: `"/users\\ud800"`) would make the stdout write
    raise and the line be lost; escaped, it is still one valid JSON line.
    """
    if line.isascii():
        return line
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        return json.dumps(json.loads(line), default=str) + ("\n" if line.endswith("\n") else "")
    return line


class JsonFormatter(logging.Formatter):
    """Format a record as one JSON object on one line (tracebacks included, escaped)."""

    def format(self, record: logging.LogRecord) -> str:
        fields = _record_fields(self, record)
        return _json_line(record.created, record.levelname, record.name, record.getMessage(), fields)


def _record_fields(formatter: logging.Formatter, record: logging.LogRecord) -> dict[str, Any] | None:
    fields: dict[str, Any] | None = getattr(record, "fields", None)
    if record.exc_info:
        fields = {**(fields or {}), "exception": formatter.formatException(record.exc_info)}
    return fields


class TextFormatter(logging.Formatter):
    """Format a record as one readable line, `12:00:00.123 INFO  app message key=value ...` (UTC).

    The same keys as JsonFormatter, masked the same way; keys without a value are left out,
    and a traceback follows on lines of its own.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry = _entry(record.created, record.levelname, record.name, record.getMessage(), _record_fields(self, record))
        head = f"{entry.pop('time')[11:23]} {entry.pop('level'):<5} {entry.pop('logger')} {entry.pop('message')}"
        exception = entry.pop("exception", None)
        pairs = "".join(f" {key}={_text_value(value)}" for key, value in entry.items() if value is not None)
        line = head + pairs + (f"\n{exception}" if exception is not None else "")
        # A lone surrogate from an event cannot be written as UTF-8: escape it, keep the line.
        return line.encode("utf-8", "backslashreplace").decode("utf-8")


def _text_value(value: Any) -> str:
    if isinstance(value, str) and value and not any(char.isspace() or char in '"=' for char in value):
        return value
    return _encode_json(value)


@lru_cache(maxsize=1)
def _utc_second(epoch_second: int) -> str:
    # Formatted once per second: a busy container logs many lines in the same one.
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_second))


# The per-invocation line, pre-laid out: the same keys, order and JSON as JsonFormatter gives
# for these fields (tests/test_logs.py checks it). The one fast path, taken only while our JSON
# handler is the only one: it skips what `logger.info` costs per line (a LogRecord, handler
# locks, the formatter's dict); the commit that kept it for #20 gives the figures.
_INVOCATION_LINE: str = (
    '{"time": "%s.%03dZ", "level": "INFO", "logger": %s, "message": "invocation", "request_id": %s, '
    '"cold_start": %s, "source": %s, "method": %s, "path": %s, "status": %s, "duration_ms": %.3f%s}\n'
)
_JSON_BOOLEANS: dict[bool | None, str] = {True: "true", False: "false", None: "null"}
_POOL_FIELDS: str = ', "pool_size": %d, "pool_checked_out": %d, "pool_overflow": %d'
_PACKAGE_LOGGER: logging.Logger = logging.getLogger(LOGGER_NAME)


def _scalar(value: str | int | bool | None) -> str:
    if value is None:
        return "null"
    if isinstance(value, str):
        return _encode_string(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(int(value))


def _pool_fields(pool: tuple[int, int, int] | str | None) -> str:
    if pool is None:
        return ""
    if isinstance(pool, str):
        return ', "pool": ' + _encode_string(pool)
    return _POOL_FIELDS % pool


def write_invocation_line(
    logger: logging.Logger,
    *,
    source: str,
    method: str | None,
    path: str | None,
    status: int | None,
    duration_ms: float,
    pool: tuple[int, int, int] | str | None,
) -> None:
    """Log the INFO line that closes an invocation: `logger.info("invocation", extra={"fields": ...})`.

    `pool` is a queue pool's (size, checked out, overflow), another pool's class name, or
    None when there is no engine yet.

    While the package's JSON handler is the only one (as on Lambda), the line is written
    straight to stdout, the same JSON without a LogRecord, handler locks and the caller
    lookup. With another handler or format, it goes through the logger, so that they see it.
    """
    if not logger.isEnabledFor(logging.INFO):
        return
    if not _json_handler_alone(logger):
        fields: dict[str, Any] = {"source": source, "method": method, "path": path, "status": status}
        fields["duration_ms"] = round(duration_ms, 3)
        if isinstance(pool, tuple):
            fields["pool_size"], fields["pool_checked_out"], fields["pool_overflow"] = pool
        elif pool is not None:
            fields["pool"] = pool
        logger.info("invocation", extra={"fields": fields})
        return
    now = time.time()
    second = int(now)
    if _secrets:  # the strings that come from the event; the rest are ours
        method, path = _masked(method), _masked(path)
    request_id = current_invocation.request_id
    # Inlined for the common types (str, int, bool); _scalar covers the rest the same way.
    line = _INVOCATION_LINE % (
        _utc_second(second),
        int((now - second) * 1000),
        _encode_string(logger.name),
        _encode_string(request_id) if type(request_id) is str else _scalar(request_id),
        _JSON_BOOLEANS.get(current_invocation.cold_start) or _scalar(current_invocation.cold_start),
        _encode_string(source),
        _encode_string(method) if type(method) is str else _scalar(method),
        _encode_string(path) if type(path) is str else _scalar(path),
        status if type(status) is int else _scalar(status),
        duration_ms,
        _POOL_FIELDS % pool if type(pool) is tuple else _pool_fields(pool),
    )
    sys.stdout.write(line if line.isascii() else _encodable(line))
    sys.stdout.flush()


def write_init_error(exc: BaseException) -> None:
    """One JSON line on stdout for a cold start that failed before logging was configured."""
    fields = {"error_type": type(exc).__name__, "error": str(exc)}
    sys.stdout.write(_json_line(time.time(), "ERROR", LOGGER_NAME, "init failed", fields) + "\n")
    sys.stdout.flush()


def _json_handler_alone(logger: logging.Logger) -> bool:
    """Whether `logger`'s records reach the package's JSON handler and nothing else (no filters either)."""
    if logger is not _PACKAGE_LOGGER and (logger.handlers or logger.filters or logger.parent is not _PACKAGE_LOGGER):
        return False
    handlers = _PACKAGE_LOGGER.handlers
    return (
        len(handlers) == 1
        and type(handlers[0].formatter) is JsonFormatter
        and not handlers[0].filters
        and not _PACKAGE_LOGGER.filters
    )


class _StdoutHandler(logging.StreamHandler):  # type: ignore[type-arg]
    """A stream handler bound to whatever `sys.stdout` is at emit time (test capture swaps it)."""

    @property
    def stream(self) -> Any:
        return sys.stdout

    @stream.setter
    def stream(self, value: Any) -> None:
        pass


def configure_logging(level: str, log_format: str = "auto") -> logging.Logger:
    """Send the package's logs to stdout, once, and return the package logger.

    `log_format` is "json", "text", or "auto": text when stderr is a terminal (a person is
    reading), JSON otherwise (Lambda, pipes, files). The logger does not propagate: the
    Lambda runtime puts its own text handler on the root logger, and each line should reach
    CloudWatch once, as JSON.
    """
    if log_format == "auto":
        log_format = "text" if sys.stderr is not None and sys.stderr.isatty() else "json"
    logger = _PACKAGE_LOGGER
    logger.setLevel(level)
    logger.propagate = False
    handler = next((handler for handler in logger.handlers if isinstance(handler, _StdoutHandler)), None)
    if handler is None:
        handler = _StdoutHandler()
        logger.addHandler(handler)
    handler.setFormatter(TextFormatter() if log_format == "text" else JsonFormatter())
    return logger
