"""What every benchmark serves: a users database of a given size, one REST v1 event, a fake context."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "REPO_ROOT",
    "USERS_PATH",
    "FakeContext",
    "build_filler_db",
    "build_users_db",
    "handler_environ",
    "load_users_event",
]

REPO_ROOT: Path = Path(__file__).resolve().parent.parent
# The captured API Gateway REST (payload 1.0) GET /users: multi-value headers and an
# execute-api Host, the shape serverless-wsgi does the most work for.
USERS_EVENT_PATH: Path = REPO_ROOT / "events" / "rest-v1.json"
USERS_PATH: str = "/users"


@dataclass(frozen=True)
class FakeContext:
    """The Lambda context attributes the handler reads."""

    aws_request_id: str = "c6af9ac6-7b61-11e6-9a41-93e8deadbeef"
    function_name: str = "users-api-bench"


def load_users_event() -> dict[str, Any]:
    """A fresh copy of the sample REST v1 `GET /users` event."""
    event: dict[str, Any] = json.loads(USERS_EVENT_PATH.read_text(encoding="utf-8"))
    return event


def build_users_db(path: Path, rows: int) -> Path:
    """A SQLite file with the bundled database's schema and `rows` users."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", ((f"user-{i:06d}",) for i in range(1, rows + 1)))
        connection.commit()
    finally:
        connection.close()
    return path


def build_filler_db(path: Path, megabytes: int) -> Path:
    """A SQLite file of about `megabytes` MB (a users table plus incompressible filler), for copy costs."""
    build_users_db(path, 100)
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE filler (chunk BLOB NOT NULL)")
        connection.execute(
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
            "INSERT INTO filler (chunk) SELECT randomblob(1024 * 1024 - 4096) FROM n",
            (megabytes,),
        )
        connection.commit()
    finally:
        connection.close()
    return path


def handler_environ(bundle: Path, copy_path: Path, base: Mapping[str, str] | None = None) -> dict[str, str]:
    """Environment for importing `handler`: serve `bundle` through its read-only copy at `copy_path`."""
    environ = dict(os.environ if base is None else base)
    for name in ("DATABASE_URL", "STRIP_STAGE_PATH", "API_GATEWAY_BASE_PATH", "LOG_LEVEL"):
        environ.pop(name, None)
    environ["BUNDLED_DB_PATH"] = str(bundle)
    environ["SQLITE_COPY_PATH"] = str(copy_path)
    return environ
