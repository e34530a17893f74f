"""The development server (`make run`): one invocation line per request, its port argument."""

from __future__ import annotations

import argparse
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from flask import Flask
from werkzeug.test import Client

from app.local import _port, logged
from tests.support.logs import log_lines

ROOT = Path(__file__).resolve().parent.parent


def test_local_server_logs_one_line_per_request_after_the_body(app: Flask, capsys: pytest.CaptureFixture[str]) -> None:
    client = Client(logged(app))
    capsys.readouterr()

    response = client.get("/users?limit=2")
    assert log_lines(capsys.readouterr().out) == []  # the body is not sent yet
    response.close()
    missing = client.get("/nope", buffered=True)

    assert (response.status_code, missing.status_code) == (200, 404)
    lines = log_lines(capsys.readouterr().out)
    assert [(line["source"], line["method"], line["path"], line["status"]) for line in lines] == [
        ("local", "GET", "/users", 200),
        ("local", "GET", "/nope", 404),
    ]
    assert [line["cold_start"] for line in lines] == [True, False]
    assert lines[0]["request_id"] != lines[1]["request_id"]
    assert lines[0]["pool_size"] == 5


@pytest.mark.parametrize("raw", ["0", "65536", "x", "-1", ""])
def test_local_server_rejects_bad_ports(raw: str) -> None:
    with pytest.raises(argparse.ArgumentTypeError, match=f"PORT must be a TCP port, 1-65535; got {raw!r}"):
        _port(raw)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _status(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=30) as response:
            status: int = response.status
            return status
    except urllib.error.HTTPError as error:
        error.close()
        return error.code


def test_make_run_serves_on_port_with_one_text_line_per_request(tmp_path: Path) -> None:
    port = _free_port()
    environ = {**os.environ, "LOG_FORMAT": "text", "SQLITE_COPY_PATH": str(tmp_path / "users.db")}
    environ.pop("DATABASE_URL", None)
    server = subprocess.Popen(
        [sys.executable, "-u", "handler.py", "--port", str(port)],
        cwd=ROOT,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,  # the reloader's child too is stopped below
    )
    assert server.stdout is not None
    lines: queue.Queue[str] = queue.Queue()

    def read() -> None:
        for line in server.stdout or ():
            lines.put(line)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    output: list[str] = []

    def wait_for(text: str) -> str:
        deadline = time.monotonic() + 60
        while True:
            line = lines.get(timeout=max(deadline - time.monotonic(), 0.01))
            output.append(line)
            if text in line:
                return line

    try:
        wait_for("Running on http://127.0.0.1:")
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/users?limit=1", timeout=30) as response:
            assert response.status == 200
        invocation = wait_for(" app.invocation invocation ")
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/nope", timeout=30)
        missing.value.close()
        assert missing.value.code == 404
        second = wait_for(" app.invocation invocation ")
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)
        reader.join(timeout=30)
        server.stdout.close()
    while not lines.empty():
        output.append(lines.get())

    assert " source=local method=GET path=/users status=200 " in invocation
    assert " path=/nope status=404 " in second
    assert sum(" app.invocation invocation " in line for line in output) == 2, output
    assert not any('"GET /' in line for line in output), output  # Werkzeug's own access line
    assert not any(line.startswith("{") for line in output), output
