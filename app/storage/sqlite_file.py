"""Checks of a SQLite file before it is served: the bundle, an S3 snapshot, a `sqlite:///` DATABASE_URL.

A file passes when GET /users can be served from it: a SQLite header, (for files we copy or
download) `PRAGMA quick_check`, and a `users` table or view with an integer `id` and a text
`name` that the query of app/storage/queries.py prepares against (`WITHOUT ROWID` included).
"""

from __future__ import annotations

import contextlib
import sqlite3
from pathlib import Path
from urllib.parse import quote

from app.config import StartupError

__all__ = [
    "USERS_TABLE",
    "InvalidSqliteFileError",
    "SqliteFileBusyError",
    "remove_sidecars",
    "remove_sqlite_file",
    "verify_sqlite_file",
]

# The table (or view) GET /users reads, and the columns it reads.
USERS_TABLE: str = "users"
_SQLITE_HEADER: bytes = b"SQLite format 3\x00"
# The SQLite header is 100 bytes; anything shorter cannot be a database.
_SQLITE_HEADER_SIZE: int = 100
# `quick_check` reports up to this many problems; the first is enough for the log line.
_QUICK_CHECK_ROWS: int = 1
_BUSY: frozenset[int] = frozenset({sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED})
# The query's shape (app/storage/queries.py), prepared and run for no row.
_PROBE: str = "SELECT id, name FROM users WHERE id > 0 ORDER BY id LIMIT 0"


class InvalidSqliteFileError(ValueError, StartupError):
    """Raised when a file is not a SQLite database GET /users can be served from; the message says why."""


class SqliteFileBusyError(RuntimeError):
    """Raised when a writer's lock kept the check from reading the file within its wait: not a verdict."""


def verify_sqlite_file(path: Path, *, quick_check: bool = True, wait_seconds: float = 1.0) -> None:
    """Raise InvalidSqliteFileError unless `path` is a SQLite database GET /users can be served from.

    `quick_check` reads every page (a few ms per MB) but skips the index cross-checks of
    integrity_check: it catches truncated and corrupted files before they are served. Off for a
    DATABASE_URL file, which others may write and which may be large. The file is only read;
    a writer's lock held past `wait_seconds` raises SqliteFileBusyError.
    """
    try:
        with path.open("rb") as file:
            header = file.read(_SQLITE_HEADER_SIZE)
    except FileNotFoundError:
        raise InvalidSqliteFileError("no such file") from None
    if len(header) < _SQLITE_HEADER_SIZE or not header.startswith(_SQLITE_HEADER):
        raise InvalidSqliteFileError("not a SQLite database (bad or missing header)")
    uri = f"file:{quote(str(path))}?mode=ro"
    try:
        with contextlib.closing(sqlite3.connect(uri, uri=True, timeout=wait_seconds)) as connection:
            if quick_check:
                problems = connection.execute(f"PRAGMA quick_check({_QUICK_CHECK_ROWS})").fetchall()
                if problems != [("ok",)]:
                    raise InvalidSqliteFileError(f"PRAGMA quick_check failed: {problems[0][0]}")
            _check_users_schema(connection)
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode in _BUSY:
            raise SqliteFileBusyError(f"locked by a writer: {exc}") from None
        raise InvalidSqliteFileError(f"unreadable SQLite database: {exc}") from None


def _check_users_schema(connection: sqlite3.Connection) -> None:
    found = connection.execute(
        "SELECT type FROM sqlite_master WHERE type IN ('table', 'view') AND name = ? COLLATE NOCASE", (USERS_TABLE,)
    ).fetchone()
    if found is None:
        raise InvalidSqliteFileError(f"the database has no {USERS_TABLE!r} table")
    kind = found[0]
    # (cid, name, declared type, notnull, default, pk); SQLite's names are case-insensitive.
    columns = {str(row[1]).lower(): str(row[2]).upper() for row in connection.execute("PRAGMA table_info(users)")}
    for column, wanted, fits in (("id", "integer", _integer_affinity), ("name", "text", _text_affinity)):
        if column not in columns:
            raise InvalidSqliteFileError(f"the {USERS_TABLE!r} {kind} has no {column!r} column")
        # An undeclared type (a view's computed column, an untyped column) holds whatever was stored.
        if columns[column] and not fits(columns[column]):
            raise InvalidSqliteFileError(
                f"the {USERS_TABLE!r} {kind}'s {column!r} column is {columns[column]}, not {wanted}"
            )
    try:
        connection.execute(_PROBE).fetchall()
    except sqlite3.DatabaseError as exc:
        if exc.sqlite_errorcode in _BUSY:
            raise
        raise InvalidSqliteFileError(f"the {USERS_TABLE!r} {kind} cannot be read: {exc}") from None


# SQLite's affinity rules (https://sqlite.org/datatype3.html, 3.1), in their order.
def _integer_affinity(declared: str) -> bool:
    return "INT" in declared


def _text_affinity(declared: str) -> bool:
    return "INT" not in declared and any(word in declared for word in ("CHAR", "CLOB", "TEXT"))


def remove_sqlite_file(path: Path) -> None:
    """Delete a SQLite file and the -wal/-shm/-journal files SQLite may have left beside it."""
    path.unlink(missing_ok=True)
    remove_sidecars(path)


def remove_sidecars(path: Path) -> None:
    """Delete the -wal/-shm/-journal files SQLite may have left beside `path`."""
    # Opening a WAL-mode file, even read-only, can create -wal and -shm files beside it.
    for suffix in ("-wal", "-shm", "-journal"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)
