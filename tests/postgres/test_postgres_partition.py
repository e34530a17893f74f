"""A server that vanishes under a pooled connection gets a 503 before the deadline, not a hang.

Each scenario runs tests/support/network_partition.py in a private network namespace (`unshare -n`), with
its own throwaway cluster, and takes that namespace's loopback down: every packet is lost, as in
a failover or a lost route, and nothing outside the namespace is touched. Without TCP bounds the
kernel retransmits for ~15 minutes while statement_timeout's error can never arrive.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.network_partition import HANG_SECONDS, REMAINING_MS
from tests.support.postgres_cluster import ClusterUnavailableError, locate_server

pytestmark = pytest.mark.slow  # a cluster per scenario, each waiting out a 6 s deadline

ROOT = Path(__file__).resolve().parents[2]


def _why_not_runnable() -> str | None:
    if sys.platform != "linux" or os.geteuid() != 0:
        return "needs root on Linux to make a private network namespace (unshare -n)"
    if not (shutil.which("unshare") and shutil.which("ip")):
        return "needs unshare (util-linux) and ip (iproute2)"
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return "PostgreSQL driver not installed: pip install -r requirements-postgres.txt"
    try:
        locate_server()
    except ClusterUnavailableError as exc:
        return f"no throwaway PostgreSQL cluster: {exc}"
    probe = subprocess.run(["unshare", "-n", "true"], capture_output=True, text=True, timeout=30, check=False)
    if probe.returncode != 0:
        return f"unshare -n is not permitted here: {probe.stderr.strip()}"
    return None


@pytest.mark.parametrize("scenario", ["between", "waiting"])
def test_postgres_lost_network_is_503_before_the_deadline(scenario: str, tmp_path: Path) -> None:
    if reason := _why_not_runnable():
        pytest.skip(reason)
    out = tmp_path / "outcome.json"
    env = {
        "PATH": os.environ["PATH"],
        "SQLITE_COPY_PATH": str(tmp_path / "users.db"),
        "PYTHONPATH": str(ROOT),
        "LOG_LEVEL": "WARNING",
    }

    # GIVEN a warm container on PostgreSQL WHEN the network goes silent (scenario) and it is invoked
    completed = subprocess.run(
        ["unshare", "-n", sys.executable, "-m", "tests.support.network_partition", scenario, str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=HANG_SECONDS + 120,
        check=False,
    )
    assert completed.returncode == 0, completed.stderr[-3000:]
    outcome = json.loads(out.read_text())

    # THEN the invocation answers 503 JSON before the context's remaining time is up
    assert not outcome["hung"], f"no answer within {HANG_SECONDS} s: {completed.stdout[-2000:]}"
    assert outcome["status"] == 503
    assert outcome["seconds"] < REMAINING_MS / 1000
