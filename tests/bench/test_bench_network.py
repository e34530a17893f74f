"""The network bench's pieces: its RESULTS.md section, and the latency proxy's delay."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Iterator

import pytest

from bench.net_proxy import LatencyProxy, ProxyProcess
from bench.report import replace_section


def test_replace_section_replaces_only_its_own_section() -> None:
    markdown = "# R\n\n## A\n\nold a\n\n## Net\n\nold\n\n## B\n\nb\n"

    replaced = replace_section(markdown, ["## Net", "", "new"])
    appended = replace_section("# R\n\n## A\n\na\n", ["## Net", "", "new"])

    assert replaced == "# R\n\n## A\n\nold a\n\n## Net\n\nnew\n\n## B\n\nb\n"
    assert appended == "# R\n\n## A\n\na\n\n## Net\n\nnew\n"


@pytest.fixture
def echo_port() -> Iterator[int]:
    listener = socket.create_server(("127.0.0.1", 0))

    def serve() -> None:
        with listener, listener.accept()[0] as conn:
            while data := conn.recv(1024):
                conn.sendall(data)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    thread.join(timeout=5)


@pytest.mark.parametrize("proxy_class", [LatencyProxy, ProxyProcess])
def test_latency_proxy_delays_each_way_and_counts_round_trips(
    proxy_class: type[LatencyProxy] | type[ProxyProcess], echo_port: int
) -> None:
    with (
        proxy_class(("127.0.0.1", echo_port), delay=0.05) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port)) as conn,
    ):
        proxy.reset()
        started = time.monotonic()
        for _ in range(3):
            conn.sendall(b"ping")
            assert conn.recv(1024) == b"ping"
        elapsed = time.monotonic() - started

        assert proxy.flights == 3
    assert elapsed >= 3 * 2 * 0.05  # each round trip waited 50 ms each way
