"""A throwaway PgBouncer in transaction mode in front of a throwaway cluster (postgres_cluster.py).

PgBouncer runs from Debian's package with its default startup-parameter rules (no
`ignore_startup_parameters`: a client sending `options` is refused, as RDS Proxy refuses it),
its own config, auth file, log and pid file in a temp dir, on a free port on 127.0.0.1, and is
stopped when the session ends; the machine's /etc/pgbouncer and any pgbouncer service are never
read or touched. PgBouncer refuses to run as root, so as root it runs as the cluster's account.
When the binary is missing, the test setup installs the package if it runs as root (CI: a fresh
machine), else PgBouncerUnavailableError says why.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy.engine import URL

from tests.support.postgres_cluster import SUPERUSER, PostgresCluster, free_port

__all__ = ["PgBouncer", "PgBouncerUnavailableError", "locate_pgbouncer", "throwaway_pgbouncer"]

DEBIAN_BINARY = Path("/usr/sbin/pgbouncer")
PACKAGE = "pgbouncer"
START_TIMEOUT_SECONDS = 20
APT_TIMEOUT_SECONDS = 600
ROOT_PREFIX = "users-api-pgbouncer-"


class PgBouncerUnavailableError(Exception):
    """Raised when this machine has no PgBouncer and cannot install one."""


def _binary() -> Path | None:
    found = shutil.which("pgbouncer")
    if found:
        return Path(found)
    return DEBIAN_BINARY if os.access(DEBIAN_BINARY, os.X_OK) else None


def locate_pgbouncer() -> Path:
    """The pgbouncer binary; installed with apt-get when missing and running as root."""
    binary = _binary()
    if binary is not None:
        return binary
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise PgBouncerUnavailableError(f"no pgbouncer binary, and not root with apt-get to install {PACKAGE!r}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"], ["apt-get", "install", "-y", "--no-install-recommends", PACKAGE]):
        result = subprocess.run(
            command, env=env, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=APT_TIMEOUT_SECONDS
        )
        if result.returncode != 0:
            raise PgBouncerUnavailableError(f"{' '.join(command)} failed: {result.stderr.strip()[-500:]}")
    # The package enables its own service on the default port; ours never uses it.
    binary = _binary()
    if binary is None:
        raise PgBouncerUnavailableError(f"{PACKAGE!r} installed, but no pgbouncer binary found")
    return binary


class PgBouncer:
    """A running PgBouncer: `url_for(database_url)` is that database through it."""

    def __init__(self, root: Path, port: int, process: subprocess.Popen[bytes]) -> None:
        self.root = root
        self.port = port
        self.process = process
        self.log_file = root / "pgbouncer.log"

    def url_for(self, url: URL) -> URL:
        return url.set(host="127.0.0.1", port=self.port)


def _config(root: Path, cluster: PostgresCluster, port: int) -> str:
    return "\n".join(
        [
            "[databases]",
            f"* = host=127.0.0.1 port={cluster.port}",
            "[pgbouncer]",
            "listen_addr = 127.0.0.1",
            f"listen_port = {port}",
            "unix_socket_dir =",
            "auth_type = trust",
            f"auth_file = {root / 'userlist.txt'}",
            "pool_mode = transaction",
            f"logfile = {root / 'pgbouncer.log'}",
            f"pidfile = {root / 'pgbouncer.pid'}",
            "max_client_conn = 200",
            "default_pool_size = 20",
            f"admin_users = {SUPERUSER}",
            "",
        ]
    )


def _accepting(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


@contextmanager
def throwaway_pgbouncer(binary: Path, cluster: PostgresCluster) -> Iterator[PgBouncer]:
    """Start PgBouncer (transaction mode) in front of `cluster`; stop it and delete its directory on exit."""
    root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
    uid, gid = cluster.account_ids
    if uid is not None and gid is not None:
        os.chown(root, uid, gid)
    port = free_port()
    (root / "pgbouncer.ini").write_text(_config(root, cluster, port))
    (root / "userlist.txt").write_text(f'"{SUPERUSER}" ""\n')
    options: dict[str, object] = {}
    if uid is not None:
        options = {"user": uid, "group": gid, "extra_groups": []}
    process = subprocess.Popen(  # noqa: S603 - our own binary and config
        [str(binary), str(root / "pgbouncer.ini")],
        cwd=root,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        **options,  # type: ignore[call-overload]
    )
    try:
        deadline = time.monotonic() + START_TIMEOUT_SECONDS
        while not _accepting(port):
            if process.poll() is not None or time.monotonic() > deadline:
                log = (
                    (root / "pgbouncer.log").read_text(errors="replace")[-2000:]
                    if (root / "pgbouncer.log").exists()
                    else ""
                )
                raise RuntimeError(f"pgbouncer did not start (exit {process.poll()}):\n{log}")
            time.sleep(0.05)
        yield PgBouncer(root, port, process)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        shutil.rmtree(root, ignore_errors=True)
