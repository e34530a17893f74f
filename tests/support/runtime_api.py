"""A small Lambda Runtime API on 127.0.0.1, for running the handler under AWS's own runtime client.

It serves the documented endpoints (https://docs.aws.amazon.com/lambda/latest/dg/runtimes-api.html)
that awslambdaric 4.2.2 calls:

    GET  /2018-06-01/runtime/invocation/next          blocks until an event is queued
    POST /2018-06-01/runtime/invocation/{id}/response
    POST /2018-06-01/runtime/invocation/{id}/error
    POST /2018-06-01/runtime/init/error
    GET  /2018-06-01/runtime/restore/next              (SnapStart) blocks until restore is released
    POST /2018-06-01/runtime/restore/error             (SnapStart)

A test queues events, then waits (with a timeout) for their answers. Everything the runtime
posts is recorded, including answers Lambda would reject (unknown or already answered ids).
Standard library only: the server must not depend on what it tests.
"""

from __future__ import annotations

import itertools
import json
import queue
import sys
import threading
import time
import uuid
from collections.abc import Iterable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Answer", "Delivery", "Invocation", "RuntimeApi"]

PREFIX = "/2018-06-01/runtime"
FUNCTION_ARN = "arn:aws:lambda:us-east-1:123456789012:function:users-api-test-api"
# How long a blocked GET checks for shutdown: short, so closing the server never waits on it.
_POLL_SECONDS = 0.05


@dataclass(frozen=True)
class Answer:
    """One POST from the runtime: an invocation's response or error, an init or restore error."""

    kind: str  # "response", "error", "init-error" or "restore-error"
    request_id: str | None
    body: bytes
    headers: dict[str, str]
    received: float

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Delivery:
    """One event handed out by /invocation/next."""

    request_id: str
    delivered: float
    client: tuple[str, int]  # the poller's address: a worker process keeps one connection


@dataclass
class Invocation:
    """A queued event and what became of it."""

    request_id: str
    invocation_id: str
    payload: bytes
    content_type: str
    deadline_ms: int
    trace_id: str
    delivered: float | None = None
    answer: Answer | None = None


@dataclass
class _State:
    lock: threading.Condition = field(default_factory=threading.Condition)
    pending: queue.Queue[Invocation] = field(default_factory=queue.Queue)
    invocations: dict[str, Invocation] = field(default_factory=dict)
    deliveries: list[Delivery] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    rejected: list[Answer] = field(default_factory=list)
    init_errors: list[Answer] = field(default_factory=list)
    restore_errors: list[Answer] = field(default_factory=list)
    restore_polls: int = 0
    restore_released: threading.Event = field(default_factory=threading.Event)
    waiting_pollers: int = 0
    in_flight: int = 0
    max_in_flight: int = 0
    requests: list[tuple[str, str, dict[str, str]]] = field(default_factory=list)
    closing: threading.Event = field(default_factory=threading.Event)


class RuntimeApi:
    """The Runtime API server: start it, point AWS_LAMBDA_RUNTIME_API at `address`, queue events."""

    def __init__(self, *, timeout_ms: int = 30_000, restore_released: bool = True) -> None:
        self._state = _State()
        self._timeout_ms = timeout_ms
        self._ids = itertools.count(1)
        if restore_released:
            self._state.restore_released.set()
        self._server = _Server(("127.0.0.1", 0), _handler_class(self._state))
        self._thread = threading.Thread(target=self._server.serve_forever, name="runtime-api", daemon=True)

    def __enter__(self) -> RuntimeApi:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._state.closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    @property
    def address(self) -> str:
        """host:port, the value of AWS_LAMBDA_RUNTIME_API."""
        host, port = self._server.server_address[:2]
        return f"{host!s}:{port}"

    # --- queueing and waiting ---------------------------------------------------------

    def queue_event(self, event: Any) -> str:
        """Queue `event` (JSON-encoded) for the next poller; return its request id."""
        return self.queue_payload(json.dumps(event).encode("utf-8"))

    def queue_payload(self, payload: bytes, *, content_type: str = "application/json") -> str:
        number = next(self._ids)
        invocation = Invocation(
            request_id=f"{number:08d}-{uuid.uuid4()}",
            invocation_id=str(uuid.uuid4()),
            payload=payload,
            content_type=content_type,
            deadline_ms=int(time.time() * 1000) + self._timeout_ms,
            trace_id=f"Root=1-{int(time.time()):08x}-{uuid.uuid4().hex[:24]};Parent={uuid.uuid4().hex[:16]};Sampled=0",
        )
        with self._state.lock:
            self._state.invocations[invocation.request_id] = invocation
        self._state.pending.put(invocation)
        return invocation.request_id

    def wait_for_answers(self, request_ids: Iterable[str], *, timeout: float) -> dict[str, Answer]:
        """The answer to each of `request_ids`; TimeoutError naming what is missing after `timeout` seconds."""
        wanted = list(request_ids)
        with self._state.lock:
            done = self._state.lock.wait_for(
                lambda: (
                    all(self._state.invocations[rid].answer is not None for rid in wanted)
                    or bool(self._state.init_errors)
                ),
                timeout=timeout,
            )
            answers = {rid: self._state.invocations[rid].answer for rid in wanted}
            if not done or self._state.init_errors:
                missing = [rid for rid, answer in answers.items() if answer is None]
                raise TimeoutError(
                    f"{len(missing)} of {len(wanted)} invocations unanswered after {timeout} s; "
                    f"init errors: {[error.body[:500] for error in self._state.init_errors]}"
                )
        return {rid: answer for rid, answer in answers.items() if answer is not None}

    def wait_for_pollers(self, count: int, *, timeout: float) -> None:
        """Wait until `count` GET /invocation/next requests are blocked here at once."""
        with self._state.lock:
            if not self._state.lock.wait_for(lambda: self._state.waiting_pollers >= count, timeout=timeout):
                raise TimeoutError(
                    f"{self._state.waiting_pollers} of {count} pollers waiting after {timeout} s; "
                    f"init errors: {[error.body[:500] for error in self._state.init_errors]}"
                )

    def wait_for_restore_poll(self, *, timeout: float) -> None:
        """Wait until the runtime has called GET /restore/next (SnapStart: its init is done)."""
        with self._state.lock:
            if not self._state.lock.wait_for(lambda: self._state.restore_polls > 0, timeout=timeout):
                raise TimeoutError(f"no GET /restore/next after {timeout} s")

    def release_restore(self) -> None:
        """Let blocked GET /restore/next requests return: the snapshot is 'restored'."""
        self._state.restore_released.set()

    # --- what was recorded --------------------------------------------------------------

    def _snapshot(self, name: str) -> Any:
        with self._state.lock:
            return list(getattr(self._state, name))

    @property
    def deliveries(self) -> list[Delivery]:
        result: list[Delivery] = self._snapshot("deliveries")
        return result

    @property
    def answers(self) -> list[Answer]:
        """Accepted responses and errors, in arrival order."""
        result: list[Answer] = self._snapshot("answers")
        return result

    @property
    def rejected(self) -> list[Answer]:
        """Posts for unknown or already answered request ids (Lambda refuses them)."""
        result: list[Answer] = self._snapshot("rejected")
        return result

    @property
    def init_errors(self) -> list[Answer]:
        result: list[Answer] = self._snapshot("init_errors")
        return result

    @property
    def restore_errors(self) -> list[Answer]:
        result: list[Answer] = self._snapshot("restore_errors")
        return result

    @property
    def requests(self) -> list[tuple[str, str, dict[str, str]]]:
        """(method, path, headers) of every request, in arrival order."""
        result: list[tuple[str, str, dict[str, str]]] = self._snapshot("requests")
        return result

    @property
    def restore_polls(self) -> int:
        with self._state.lock:
            return self._state.restore_polls

    @property
    def max_in_flight(self) -> int:
        """Most invocations delivered and not yet answered at one time."""
        with self._state.lock:
            return self._state.max_in_flight

    def invocation(self, request_id: str) -> Invocation:
        with self._state.lock:
            return self._state.invocations[request_id]


class _Server(ThreadingHTTPServer):
    daemon_threads = True  # a GET blocked on /next must not hold up closing

    def handle_error(self, request: Any, client_address: Any) -> None:
        # awslambdaric's restore/init calls use http.client, which drops the connection after
        # one answer; a runtime killed at teardown does the same. Neither is an error here.
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)


def _handler_class(state: _State) -> type[BaseHTTPRequestHandler]:
    class RuntimeApiHandler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as Lambda's endpoint; curl reuses the connection

        def log_message(self, format: str, *args: Any) -> None:
            pass  # the test output is the runtime's, not ours

        def _record(self) -> None:
            with state.lock:
                state.requests.append((self.command, self.path, dict(self.headers.items())))

        def _reply(self, status: HTTPStatus, body: bytes = b"", headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def _read_body(self) -> bytes:
            length = int(self.headers.get("Content-Length") or 0)
            return self.rfile.read(length) if length else b""

        def do_GET(self) -> None:
            self._record()
            if self.path == f"{PREFIX}/invocation/next":
                self._next()
            elif self.path == f"{PREFIX}/restore/next":
                self._restore_next()
            else:
                self._reply(HTTPStatus.NOT_FOUND, b'{"errorType":"NotFound"}')

        def _next(self) -> None:
            with state.lock:
                state.waiting_pollers += 1
                state.lock.notify_all()
            try:
                while True:
                    if state.closing.is_set():
                        self.close_connection = True
                        return
                    try:
                        invocation = state.pending.get(timeout=_POLL_SECONDS)
                    except queue.Empty:
                        continue
                    break
            finally:
                with state.lock:
                    state.waiting_pollers -= 1
            with state.lock:
                invocation.delivered = time.monotonic()
                state.deliveries.append(Delivery(invocation.request_id, invocation.delivered, self.client_address[:2]))
                state.in_flight += 1
                state.max_in_flight = max(state.max_in_flight, state.in_flight)
            self._reply(
                HTTPStatus.OK,
                invocation.payload,
                {
                    "Content-Type": invocation.content_type,
                    "Lambda-Runtime-Aws-Request-Id": invocation.request_id,
                    "Lambda-Runtime-Deadline-Ms": str(invocation.deadline_ms),
                    "Lambda-Runtime-Invoked-Function-Arn": FUNCTION_ARN,
                    "Lambda-Runtime-Trace-Id": invocation.trace_id,
                    "Lambda-Runtime-Invocation-Id": invocation.invocation_id,
                },
            )

        def _restore_next(self) -> None:
            with state.lock:
                state.restore_polls += 1
                state.lock.notify_all()
            while not state.restore_released.wait(_POLL_SECONDS):
                if state.closing.is_set():
                    self.close_connection = True
                    return
            self._reply(HTTPStatus.OK)

        def do_POST(self) -> None:
            self._record()
            body = self._read_body()
            headers = dict(self.headers.items())
            parts = self.path.removeprefix(f"{PREFIX}/").split("/")
            if parts == ["init", "error"]:
                self._accept(state.init_errors, Answer("init-error", None, body, headers, time.monotonic()))
            elif parts == ["restore", "error"]:
                self._accept(state.restore_errors, Answer("restore-error", None, body, headers, time.monotonic()))
            elif len(parts) == 3 and parts[0] == "invocation" and parts[2] in ("response", "error"):
                self._answer(Answer(parts[2], parts[1], body, headers, time.monotonic()))
            else:
                self._reply(HTTPStatus.NOT_FOUND, b'{"errorType":"NotFound"}')

        def _accept(self, into: list[Answer], answer: Answer) -> None:
            with state.lock:
                into.append(answer)
                state.lock.notify_all()
            self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}', {"Content-Type": "application/json"})

        def _answer(self, answer: Answer) -> None:
            with state.lock:
                invocation = state.invocations.get(answer.request_id or "")
                if invocation is None or invocation.delivered is None or invocation.answer is not None:
                    state.rejected.append(answer)
                    state.lock.notify_all()
                    rejected = True
                else:
                    invocation.answer = answer
                    state.answers.append(answer)
                    state.in_flight -= 1
                    state.lock.notify_all()
                    rejected = False
            if rejected:
                self._reply(
                    HTTPStatus.BAD_REQUEST,
                    b'{"errorType":"InvalidRequestID","errorMessage":"Invalid request ID"}',
                    {"Content-Type": "application/json"},
                )
            else:
                self._reply(HTTPStatus.ACCEPTED, b'{"status":"OK"}', {"Content-Type": "application/json"})

    return RuntimeApiHandler
