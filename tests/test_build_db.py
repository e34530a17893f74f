"""The bundled database is generated from data/schema.sql + data/users.csv, reproducibly."""

from __future__ import annotations

import contextlib
import sqlite3
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "scripts"))
import build_db  # noqa: E402


def test_build_db_committed_bundle_matches_sources() -> None:
    assert build_db.main(["--check"]) == 0


def test_build_db_is_byte_reproducible(tmp_path: Path) -> None:
    first, second = tmp_path / "a.db", tmp_path / "b.db"

    build_db.build(first)
    build_db.build(second)

    assert first.read_bytes() == second.read_bytes()


def test_build_db_contains_seed_rows_in_id_order(tmp_path: Path) -> None:
    out = tmp_path / "users.db"

    build_db.build(out)

    with contextlib.closing(sqlite3.connect(out)) as connection, connection:
        rows = connection.execute("SELECT id, name FROM users ORDER BY rowid").fetchall()
    connection.close()
    assert rows == build_db.read_seed(build_db.SEED_PATH)
    assert [name for _, name in rows] == ["Alice", "Bob", "Carol", "Dave", "Eve"]


def test_build_db_check_fails_on_drift(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    drifted = tmp_path / "users.db"
    build_db.build(drifted)
    with contextlib.closing(sqlite3.connect(drifted)) as connection, connection:
        connection.execute("INSERT INTO users (name) VALUES ('Hand-edited')")
    connection.close()

    assert build_db.main(["--check", "--out", str(drifted)]) == 1
    assert "does not match" in capsys.readouterr().err


def test_build_db_rejects_duplicate_ids(tmp_path: Path) -> None:
    seed = tmp_path / "users.csv"
    seed.write_text("id,name\n1,Ann\n1,Ben\n", encoding="utf-8")

    with pytest.raises(ValueError, match="duplicate ids"):
        build_db.read_seed(seed)
