"""A throwaway PostgreSQL cluster for one test session: initdb + pg_ctl in a temp dir, on a free port.

Tests that restart the server or kill its backends run only against such a cluster, never
against the machine's own server. It listens on 127.0.0.1 only, keeps its unix socket in its own
temp dir, and is stopped (`pg_ctl stop -m immediate`) and deleted when the session ends.

initdb and pg_ctl refuse to run as root, so when the tests run as root both run as the
`postgres` system account (through subprocess's `user=`/`group=`, no sudo needed) in a temp dir
that account owns.
"""

from __future__ import annotations

import os
import pwd
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy.engine import URL

from app.storage.snapshot import process_alive

__all__ = [
    "ClusterUnavailableError",
    "PostgresCluster",
    "find_bindir",
    "free_port",
    "locate_server",
    "remove_orphaned_clusters",
    "throwaway_cluster",
]

# The OS account that owns the cluster when the tests run as root (Debian's packages create it).
SERVER_ACCOUNT = "postgres"
SUPERUSER = "postgres"
PG_CTL_TIMEOUT_SECONDS = 60
START_ATTEMPTS = 5  # a free port can be taken by someone else between choosing it and binding it
# Durability is worthless in a cluster deleted at the end of the session; skipping it saves I/O.
SERVER_SETTINGS = {
    "listen_addresses": "'127.0.0.1'",
    "fsync": "off",
    "synchronous_commit": "off",
    "full_page_writes": "off",
    "logging_collector": "off",
}
DEBIAN_BINDIRS = Path("/usr/lib/postgresql")
# Cluster directories: <temp>/users-api-pg-<pid of the test session>-<random>.
ROOT_PREFIX = "users-api-pg-"
_ROOT_PATTERN = re.compile(rf"{re.escape(ROOT_PREFIX)}(?P<pid>\d+)-\w+")


class ClusterUnavailableError(Exception):
    """Raised when this machine cannot run a throwaway cluster (no server binaries, no unprivileged account)."""


@dataclass(frozen=True)
class _Account:
    """Whom initdb, pg_ctl and the server run as; uid None: as ourselves."""

    uid: int | None = None
    gid: int | None = None


def _has_server_binaries(bindir: Path) -> bool:
    return all(os.access(bindir / name, os.X_OK) for name in ("initdb", "pg_ctl", "postgres"))


def _debian_version(bindir: Path) -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", bindir.parent.name))


def find_bindir() -> Path | None:
    """The directory holding initdb, pg_ctl and postgres: `pg_config --bindir`, else Debian's newest, else PATH."""
    candidates: list[Path] = []
    if pg_config := shutil.which("pg_config"):
        found = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=30, check=False)
        if found.returncode == 0 and found.stdout.strip():
            candidates.append(Path(found.stdout.strip()))
    if DEBIAN_BINDIRS.is_dir():
        candidates.extend(sorted(DEBIAN_BINDIRS.glob("*/bin"), key=_debian_version, reverse=True))
    if initdb := shutil.which("initdb"):
        candidates.append(Path(initdb).resolve().parent)
    return next((bindir for bindir in candidates if _has_server_binaries(bindir)), None)


def _server_account() -> _Account:
    if os.geteuid() != 0:
        return _Account()
    try:
        entry = pwd.getpwnam(SERVER_ACCOUNT)
    except KeyError:
        raise ClusterUnavailableError(
            f"running as root, and initdb refuses root: no '{SERVER_ACCOUNT}' account to run the throwaway cluster as"
        ) from None
    return _Account(entry.pw_uid, entry.pw_gid)


def free_port() -> int:
    """A port on 127.0.0.1 nothing listens on now (someone may take it before we bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PostgresCluster:
    """A running throwaway cluster: superuser `postgres`, trust auth, 127.0.0.1:`port` only."""

    def __init__(self, bindir: Path, root: Path, account: _Account) -> None:
        self.bindir = bindir
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "server.log"
        self.port = 0
        self._account = account

    @property
    def account_ids(self) -> tuple[int | None, int | None]:
        """(uid, gid) the server runs as; (None, None): as ourselves. Other daemons in front of it run so too."""
        return self._account.uid, self._account.gid

    @property
    def admin_url(self) -> URL:
        """The maintenance database, as the superuser."""
        return URL.create(
            "postgresql+psycopg", username=SUPERUSER, host="127.0.0.1", port=self.port, database="postgres"
        )

    def _run(self, program: str, *args: str) -> subprocess.CompletedProcess[str]:
        # The developer's PG* variables (PGDATA, PGPORT, PGHOST...) must not steer the cluster.
        env = {name: value for name, value in os.environ.items() if not name.startswith("PG")}
        options: dict[str, Any] = {}
        if self._account.uid is not None:
            options = {"user": self._account.uid, "group": self._account.gid, "extra_groups": []}
        return subprocess.run(
            [str(self.bindir / program), *args],
            cwd=self.root,
            env=env,
            capture_output=True,
            text=True,
            timeout=PG_CTL_TIMEOUT_SECONDS + 30,
            check=False,
            **options,
        )

    def _pg_ctl(self, action: str, *args: str) -> subprocess.CompletedProcess[str]:
        # -l always: without it the server would inherit pg_ctl's stdout pipe and outlive our read of it.
        timeout = str(PG_CTL_TIMEOUT_SECONDS)
        return self._run(
            "pg_ctl", action, "-D", str(self.data_dir), "-l", str(self.log_file), "-w", "-t", timeout, *args
        )

    def _fail(self, what: str, result: subprocess.CompletedProcess[str]) -> RuntimeError:
        log = self.log_file.read_text(errors="replace")[-2000:] if self.log_file.exists() else ""
        return RuntimeError(f"{what} failed ({result.returncode}): {result.stdout}{result.stderr}\n{log}")

    def init(self) -> None:
        result = self._run(
            "initdb",
            *("-D", str(self.data_dir), "-U", SUPERUSER, "-A", "trust", "-E", "UTF8"),
            *("--no-locale", "--no-sync", "--no-instructions"),
        )
        if result.returncode != 0:
            raise self._fail("initdb", result)
        settings = {**SERVER_SETTINGS, "unix_socket_directories": f"'{self.root}'"}
        with (self.data_dir / "postgresql.conf").open("a") as conf:
            conf.writelines(f"{name} = {value}\n" for name, value in settings.items())

    def start(self) -> None:
        for _ in range(START_ATTEMPTS):
            self.port = free_port()
            result = self._pg_ctl("start", "-o", f"-p {self.port}")
            if result.returncode == 0:
                return
            if "could not bind" not in self.log_file.read_text(errors="replace"):
                raise self._fail("pg_ctl start", result)
            self.log_file.unlink()  # the next attempt's failure must be read from a fresh log
        raise self._fail(f"pg_ctl start ({START_ATTEMPTS} ports taken)", result)

    def restart(self) -> None:
        """Restart the server the way an operator would (`pg_ctl restart -m fast`): every backend ends."""
        result = self._pg_ctl("restart", "-m", "fast")  # keeps the port: pg_ctl reuses postmaster.opts
        if result.returncode != 0:
            raise self._fail("pg_ctl restart", result)

    def stop(self) -> None:
        """Stop at once (nothing in it is kept) and delete its directory."""
        try:
            if (self.data_dir / "postmaster.pid").exists():
                result = self._run("pg_ctl", "stop", "-D", str(self.data_dir), "-m", "immediate", "-w")
                if result.returncode != 0:
                    raise self._fail("pg_ctl stop", result)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


def locate_server() -> Path:
    """The server binaries' directory, if this machine can run a throwaway cluster.

    Raises ClusterUnavailableError, saying why, if it has no server binaries or no account to run them as.
    """
    bindir = find_bindir()
    if bindir is None:
        raise ClusterUnavailableError(
            "no PostgreSQL server binaries (initdb, pg_ctl, postgres) in `pg_config --bindir`, "
            f"{DEBIAN_BINDIRS}/*/bin or PATH: install PostgreSQL's server package"
        )
    _server_account()
    return bindir


def remove_orphaned_clusters(bindir: Path, temp_dir: Path | None = None) -> list[Path]:
    """Stop and delete the clusters of test sessions that died without cleaning up (SIGKILL, OOM).

    A cluster's directory names the pid of the session that made it; those of live sessions
    (another checkout testing at the same time) are left alone. Returns the directories removed.
    """
    removed = []
    for root in (temp_dir or Path(tempfile.gettempdir())).glob(f"{ROOT_PREFIX}*"):
        match = _ROOT_PATTERN.fullmatch(root.name)
        if match is None or not root.is_dir() or process_alive(int(match["pid"])):
            continue
        account = _Account(root.stat().st_uid, root.stat().st_gid) if os.geteuid() == 0 else _Account()
        orphan = PostgresCluster(bindir, root, account)
        try:
            orphan.stop()
        except RuntimeError:
            shutil.rmtree(root, ignore_errors=True)  # a server that will not stop is gone already
        removed.append(root)
    return removed


@contextmanager
def throwaway_cluster(bindir: Path) -> Iterator[PostgresCluster]:
    """Start a fresh cluster from `bindir` (see locate_server) in a new temp dir; stop and delete it on exit."""
    account = _server_account()
    remove_orphaned_clusters(bindir)
    # Not pytest's tmp_path: its parent is private to root, and the server account must reach it.
    root = Path(tempfile.mkdtemp(prefix=f"{ROOT_PREFIX}{os.getpid()}-"))
    if account.uid is not None and account.gid is not None:
        os.chown(root, account.uid, account.gid)
    cluster = PostgresCluster(bindir, root, account)
    try:
        cluster.init()
        cluster.start()
        yield cluster
    finally:
        cluster.stop()
