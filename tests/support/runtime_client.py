"""Running the handler under AWS's Python runtime interface client (awslambdaric), as Lambda does.

A RuntimeProcess is one `python -m awslambdaric <handler>` (cwd: the repository root, the package
root on Lambda) polling a RuntimeApi (runtime_api.py), in its own process group so that stopping
it reaches the workers it forks. The `start_runtime` fixture (tests/conftest.py) starts them.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support import ROOT
from tests.support.runtime_api import Answer, RuntimeApi

__all__ = ["HANDLER", "PRIMED_HANDLER", "TIMEOUT_SECONDS", "RuntimeProcess", "sqlite_copy_path"]

# Generous for a cold start on a busy 2-core CI machine, short enough that a hang fails fast.
TIMEOUT_SECONDS = 60.0
HANDLER = "handler.handler"
# The SnapStart tests' handler: the real one, its pool primed during the init (primed_handler.py).
PRIMED_HANDLER = "tests.support.primed_handler.handler"


@dataclass
class RuntimeProcess:
    """A running `python -m awslambdaric handler.handler` and where its output goes."""

    process: subprocess.Popen[bytes]
    stdout_path: Path
    stderr_path: Path

    @classmethod
    def start(
        cls,
        api: RuntimeApi,
        tmp_path: Path,
        *,
        name: str,
        handler: str = HANDLER,
        extra_env: Mapping[str, str] | None = None,
    ) -> RuntimeProcess:
        """Start `python -m awslambdaric <handler>`; its output goes to tmp_path/<name>.stdout and .stderr."""
        stdout_path = tmp_path / f"{name}.stdout"
        stderr_path = tmp_path / f"{name}.stderr"
        with stdout_path.open("ab") as stdout, stderr_path.open("ab") as stderr:
            process = subprocess.Popen(
                [sys.executable, "-m", "awslambdaric", handler],
                cwd=ROOT,
                env=_runtime_env(api, tmp_path, handler, extra_env or {}),
                stdin=subprocess.DEVNULL,
                stdout=stdout,
                stderr=stderr,
                start_new_session=True,  # its own process group, so stopping it reaches forked workers
            )
        return cls(process, stdout_path, stderr_path)

    def stop(self) -> None:
        """Terminate the runtime and its workers; before the Runtime API closes, so none logs a lost connection."""
        _stop(self.process)

    def _fail_if_exited(self) -> None:
        if self.process.poll() is not None:
            pytest.fail(f"the runtime exited with {self.process.returncode}:\n{self.output_tail()}")

    def output_tail(self) -> str:
        out = self.stdout_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        err = self.stderr_path.read_text(encoding="utf-8", errors="replace")[-3000:]
        return f"--- stdout ---\n{out}\n--- stderr ---\n{err}"

    def wait_for_answers(self, api: RuntimeApi, request_ids: list[str]) -> dict[str, Answer]:
        """The answers to `request_ids`, failing at once if the runtime dies, after TIMEOUT_SECONDS if it hangs."""
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            try:
                return api.wait_for_answers(request_ids, timeout=0.5)
            except TimeoutError as error:
                self._fail_if_exited()
                if api.init_errors or time.monotonic() > deadline:
                    pytest.fail(f"{error}\n{self.output_tail()}")

    def wait_for_pollers(self, api: RuntimeApi, count: int) -> None:
        deadline = time.monotonic() + TIMEOUT_SECONDS
        while True:
            try:
                api.wait_for_pollers(count, timeout=0.5)
                return
            except TimeoutError as error:
                self._fail_if_exited()
                if api.init_errors or time.monotonic() > deadline:
                    pytest.fail(f"{error}\n{self.output_tail()}")

    def log_lines(self) -> list[dict[str, Any]]:
        """stdout as JSON objects; a line that is not one fails the test (CloudWatch would get plain text)."""
        lines = []
        for line in self.stdout_path.read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            try:
                lines.append(json.loads(line))
            except json.JSONDecodeError:
                pytest.fail(f"stdout line is not JSON: {line[:300]!r}")
        return lines

    def worker_pids(self) -> list[int]:
        """Running processes whose parent is the runtime process."""
        return _live_processes(lambda ppid, _pgrp: ppid == self.process.pid)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """Terminate the runtime and its forked workers: they share its process group."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        try:
            os.killpg(process.pid, sig)
        except ProcessLookupError:
            break
        deadline = time.monotonic() + 5
        while _live_processes(lambda _ppid, pgrp: pgrp == process.pid) and time.monotonic() < deadline:
            process.poll()  # reap the runtime itself; orphaned workers are reaped by init
            time.sleep(0.05)
        if not _live_processes(lambda _ppid, pgrp: pgrp == process.pid):
            break
    process.wait(timeout=5)


def _live_processes(match: Callable[[int, int], bool]) -> list[int]:
    """Pids of running (not zombie) processes whose (parent pid, process group) `match` (Linux /proc)."""
    pids = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            # "pid (comm) state ppid pgrp ...": comm may hold spaces, so split after its last ')'.
            state, ppid, pgrp = stat.read_text().rsplit(")", 1)[1].split()[:3]
        except (OSError, IndexError, ValueError):
            continue  # the process ended meanwhile
        if state != "Z" and match(int(ppid), int(pgrp)):
            pids.append(int(stat.parent.name))
    return sorted(pids)


def _runtime_env(api: RuntimeApi, tmp_path: Path, handler: str, extra: Mapping[str, str]) -> dict[str, str]:
    """What Lambda's python3.13 runtime sets, plus the app's /tmp copy path; nothing from the developer's shell."""
    no_aws_config = str(tmp_path / "no-aws-config")
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "LANG": "C.UTF-8",
        "TZ": ":UTC",
        "HOME": str(tmp_path),
        "AWS_LAMBDA_RUNTIME_API": api.address,
        # awslambdaric takes the handler from argv and reads neither of these; Lambda sets them.
        "_HANDLER": handler,
        "LAMBDA_TASK_ROOT": str(ROOT),
        # Read by awslambdaric: python3.13 turns on polling /next from a thread and non-ASCII JSON.
        "AWS_EXECUTION_ENV": "AWS_Lambda_python3.13",
        "AWS_LAMBDA_INITIALIZATION_TYPE": "on-demand",
        "AWS_LAMBDA_FUNCTION_NAME": "users-api-test-api",
        "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
        "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": "512",
        "AWS_LAMBDA_LOG_GROUP_NAME": "/aws/lambda/users-api-test-api",
        "AWS_LAMBDA_LOG_STREAM_NAME": "2026/01/01/[$LATEST]00000000000000000000000000000000",
        "AWS_REGION": "us-east-1",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_CONFIG_FILE": no_aws_config,
        "AWS_SHARED_CREDENTIALS_FILE": no_aws_config,
        "SQLITE_COPY_PATH": str(sqlite_copy_path(tmp_path)),
        **extra,
    }


def sqlite_copy_path(tmp_path: Path) -> Path:
    """Where a runtime started in `tmp_path` copies the bundled database (its SQLITE_COPY_PATH)."""
    return tmp_path / "lambda-tmp" / "users.db"
