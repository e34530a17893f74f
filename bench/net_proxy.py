"""A loopback TCP proxy that adds latency each way and counts round trips; no root needed.

    with LatencyProxy(("127.0.0.1", 5432), delay=0.001) as proxy:
        url = url.set(host="127.0.0.1", port=proxy.port)

Every byte is forwarded unchanged, `delay` seconds late in each direction (a delay line: bytes
read at t leave at t + delay, so a large answer streams, it does not wait per chunk). A
*flight* is a run of client-to-server bytes sent after the server last spoke (or first): a
client that waits for each answer before sending again makes one flight per round trip, so
`flights` counts round trips. Used by the network bench (bench/postgres_network.py) and by the
tests that prove a warm GET is one round trip (tests/postgres/test_postgres.py).
"""

from __future__ import annotations

import contextlib
import heapq
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import TracebackType

__all__ = ["LatencyProxy", "ProxyProcess"]

_READ_BYTES = 65_536
_ACCEPT_POLL_SECONDS = 0.2


class _Pipe:
    """One direction of one connection: read from `source`, send to `sink` `delay` seconds later."""

    def __init__(self, proxy: LatencyProxy, source: socket.socket, sink: socket.socket, *, upstream: bool) -> None:
        self._proxy = proxy
        self._source = source
        self._sink = sink
        self._upstream = upstream
        self._queue: list[tuple[float, int, bytes]] = []
        self._ready = threading.Condition()
        self._closed = False
        self._count = 0

    def start(self) -> None:
        threading.Thread(target=self._read, daemon=True).start()
        threading.Thread(target=self._send, daemon=True).start()

    def _read(self) -> None:
        try:
            while data := self._source.recv(_READ_BYTES):
                self._proxy._saw(self._upstream, self._source, data)
                with self._ready:
                    self._count += 1
                    heapq.heappush(self._queue, (time.monotonic() + self._proxy.delay, self._count, data))
                    self._ready.notify()
        except OSError:
            pass
        with self._ready:
            self._closed = True
            self._ready.notify()

    def _send(self) -> None:
        try:
            while True:
                with self._ready:
                    while not self._queue and not self._closed:
                        self._ready.wait()
                    if not self._queue:
                        break
                    due, _, data = self._queue[0]
                    wait = due - time.monotonic()
                    if wait > 0:
                        self._ready.wait(wait)
                        continue
                    heapq.heappop(self._queue)
                self._sink.sendall(data)
        except OSError:
            pass
        # Half-close: the other side sees end of stream once everything before it has gone.
        with contextlib.suppress(OSError):
            self._sink.shutdown(socket.SHUT_WR)


class LatencyProxy:
    """Listens on 127.0.0.1 (a free port); forwards each connection to `target`, `delay` s late each way."""

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0) -> None:
        self.target = target
        self.delay = delay
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_ACCEPT_POLL_SECONDS)
        self.port: int = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._sockets: list[socket.socket] = []
        self._flights = 0
        self._server_spoke = True  # the client's first bytes start a flight
        # What each client connection sent, in order of connection (for tests reading the protocol).
        self._sent: dict[socket.socket, bytearray] = {}
        self._thread = threading.Thread(target=self._accept, daemon=True)

    @property
    def flights(self) -> int:
        """Client-to-server flights since the start or the last reset (all connections together)."""
        with self._lock:
            return self._flights

    def reset(self) -> None:
        with self._lock:
            self._flights = 0

    def sent_by_clients(self) -> list[bytes]:
        """Every byte each client connection sent so far, one item per connection, oldest first."""
        with self._lock:
            return [bytes(sent) for sent in self._sent.values()]

    def _saw(self, upstream: bool, source: socket.socket, data: bytes) -> None:
        with self._lock:
            if upstream:
                if self._server_spoke:
                    self._flights += 1
                self._sent.setdefault(source, bytearray()).extend(data)
            self._server_spoke = not upstream

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(self.target, timeout=10)
            except OSError:
                client.close()
                continue
            server.settimeout(None)
            for sock in (client, server):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._sockets += [client, server]
            _Pipe(self, client, server, upstream=True).start()
            _Pipe(self, server, client, upstream=False).start()

    def drop_connections(self) -> None:
        """Close every connection through the proxy (a NAT or proxy dropping them)."""
        with self._lock:
            sockets, self._sockets = self._sockets, []
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def __enter__(self) -> LatencyProxy:
        self._thread.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        self._stop.set()
        self._listener.close()
        self._thread.join(timeout=5)
        self.drop_connections()


class ProxyProcess:
    """A LatencyProxy in a child process, so that it never waits for the GIL of the code it measures.

    Same `port`, `flights` and `reset()`; the child answers over its stdin/stdout.
    """

    def __init__(self, target: tuple[str, int], *, delay: float = 0.0) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "bench.net_proxy", target[0], str(target[1]), str(delay)],
            cwd=Path(__file__).resolve().parent.parent,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        self.port = int(self._ask(None))

    def _ask(self, command: str | None) -> str:
        assert self._process.stdin is not None and self._process.stdout is not None
        if command is not None:
            self._process.stdin.write(command + "\n")
            self._process.stdin.flush()
        answer = self._process.stdout.readline()
        if not answer:
            raise RuntimeError("the proxy process ended")
        return answer.strip()

    @property
    def flights(self) -> int:
        return int(self._ask("flights"))

    def reset(self) -> None:
        self._ask("reset")

    def __enter__(self) -> ProxyProcess:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, traceback: TracebackType | None
    ) -> None:
        assert self._process.stdin is not None
        self._process.stdin.close()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait(timeout=10)
        if self._process.stdout is not None:
            self._process.stdout.close()


def _serve(argv: list[str]) -> None:
    host, port, delay = argv[0], int(argv[1]), float(argv[2])
    with LatencyProxy((host, port), delay=delay) as proxy:
        print(proxy.port, flush=True)
        for line in sys.stdin:
            if line.strip() == "reset":
                proxy.reset()
                print("ok", flush=True)
            else:
                print(proxy.flights, flush=True)


if __name__ == "__main__":
    _serve(sys.argv[1:])
