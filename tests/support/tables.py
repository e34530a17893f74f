"""Users tables: the bundled one's names, the type of the `make_users_db` fixture, an in-memory
table for page collection, and large generated tables built inside SQLite in one statement
(1M rows in about a second)."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from tests.support.names import TRICKY_NAMES

__all__ = ["SEED_NAMES", "TRICKY_EVERY", "FakeTable", "MakeUsersDb", "build_users_db"]

# GET /users as text from the bundled data/users.db (data/users.csv).
SEED_NAMES = "Alice,Bob,Carol,Dave,Eve"

# The `make_users_db` fixture (tests/conftest.py): names in (and `filename=`), the SQLite file's path out.
MakeUsersDb = Callable[..., Path]

# Every TRICKY_EVERY-th user gets a tricky name; prime, so they fall all over pages and chunks.
TRICKY_EVERY = 997


def build_users_db(path: Path, count: int) -> list[str]:
    """Write `count` users, "user<id>" or a tricky name, with ids 1..count; return the names in id order."""
    connection = sqlite3.connect(path)
    try:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.execute("CREATE TEMP TABLE tricky (i INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO tricky (i, name) VALUES (?, ?)", enumerate(TRICKY_NAMES))
        connection.execute(
            """
            WITH RECURSIVE seq(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM seq WHERE i < :count)
            INSERT INTO users (id, name)
            SELECT i, CASE
                WHEN i % :every = 0 THEN (SELECT name FROM tricky WHERE tricky.i = (seq.i / :every) % :tricky)
                ELSE 'user' || i
            END
            FROM seq
            """,
            {"count": count, "every": TRICKY_EVERY, "tricky": len(TRICKY_NAMES)},
        )
        connection.commit()
        return [name for (name,) in connection.execute("SELECT name FROM users ORDER BY id")]
    finally:
        connection.close()


@dataclass
class FakeTable:
    """(key, name) rows in key order, answering keyset chunk queries and counting them."""

    rows: list[tuple[int, str]]
    calls: list[tuple[int | None, int]] = field(default_factory=list)

    def fetch(self, after: int | None, count: int) -> Sequence[tuple[int, str]]:
        self.calls.append((after, count))
        start = 0 if after is None else next((i for i, (key, _) in enumerate(self.rows) if key > after), len(self.rows))
        return self.rows[start : start + count]

    @property
    def rows_fetched(self) -> int:
        return sum(count for _, count in self.calls)
