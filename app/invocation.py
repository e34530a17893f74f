"""One Lambda invocation: timed, answered if it is not HTTP, and logged as one JSON line.

with invocations.record(event, context) as invocation:
    if invocation.response is None:
        invocation.response = serverless_wsgi.handle_request(app, event, context)
return invocation.response
"""

from __future__ import annotations

import logging
import time
from types import TracebackType
from typing import Any

from flask import Flask
from sqlalchemy.pool import QueuePool

from app.db import current_engine, pool_figures, queue_pool_figures
from app.lambda_events import (
    EventSource,
    classify_event,
    proxy_error_response,
    request_line,
    unsupported_event_response,
    with_headers,
)
from app.logs import LOGGER_NAME, current_invocation, log_fields, write_invocation_line
from app.types import LambdaContext, LambdaResponse

__all__ = ["Invocation", "InvocationRecorder"]

_logger = logging.getLogger(f"{LOGGER_NAME}.invocation")


class InvocationRecorder:
    """Per-process invocation bookkeeping: the cold-start flag, and the app whose engine's pool is reported.

    The engine is looked up per invocation: a refreshed S3 snapshot replaces it.
    """

    def __init__(self, app: Flask) -> None:
        self.app = app
        self.cold_start = True

    def record(self, event: Any, context: LambdaContext | None) -> Invocation:
        return Invocation(self, event, context)


class Invocation:
    """Context manager around one invocation. `response` is pre-set for events the app must not see."""

    __slots__ = ("_recorder", "_started", "event", "response", "source")

    def __init__(self, recorder: InvocationRecorder, event: Any, context: LambdaContext | None) -> None:
        self._recorder = recorder
        self.source = classify_event(event)
        self.event = with_headers(event) if self.source.is_http else event
        self.response: LambdaResponse | None = None
        current_invocation.request_id = getattr(context, "aws_request_id", None)
        current_invocation.cold_start = recorder.cold_start
        self._started = 0.0

    def __enter__(self) -> Invocation:
        self._started = time.perf_counter()
        if self.source is EventSource.WARMUP:
            self.response = {}  # what serverless-wsgi answers too, without touching the app or the DB
        elif self.source is EventSource.UNSUPPORTED:
            _logger.error(
                "unsupported event",
                extra={"fields": {"event_keys": sorted(self.event)[:20] if isinstance(self.event, dict) else None}},
            )
            self.response = unsupported_event_response()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> bool:
        suppress = False
        if exc is not None and isinstance(exc, Exception):
            # Errors inside the app are answered by its handlers; this is the adapter failing on
            # an event it accepted. Answer JSON rather than return a traceback to the caller.
            _logger.error("invocation failed", exc_info=exc)
            self.response = proxy_error_response(500, "internal_server_error", "The server hit an unexpected error.")
            suppress = True
        self._log()
        self._recorder.cold_start = False
        return suppress

    def _log(self) -> None:
        if not _logger.isEnabledFor(logging.INFO):
            return
        method, path = request_line(self.event, self.source)
        status = (self.response or {}).get("statusCode")
        duration_ms = round((time.perf_counter() - self._started) * 1000, 3)
        engine = current_engine(self._recorder.app)
        pool = None if engine is None else engine.pool  # None: an S3 snapshot that has not loaded yet
        if isinstance(pool, QueuePool):  # the usual case, on the line's fast path
            write_invocation_line(
                _logger,
                source=self.source.value,
                method=method,
                path=path,
                status=status,
                duration_ms=duration_ms,
                pool=queue_pool_figures(pool),
            )
            return
        fields: dict[str, Any] = {
            "source": self.source.value,
            "method": method,
            "path": path,
            "status": status,
            "duration_ms": duration_ms,
        }
        if pool is not None:
            fields.update(pool_figures(pool))
        log_fields(_logger, logging.INFO, "invocation", fields)
