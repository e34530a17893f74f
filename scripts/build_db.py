"""Build the bundled SQLite database from its text sources.

    python scripts/build_db.py            # write data/users.db
    python scripts/build_db.py --check    # exit 1 if data/users.db differs from the sources

The database is never edited by hand: data/schema.sql and data/users.csv are the
sources, this script is the only writer, and the same inputs give the same bytes
(for a given SQLite version), so the file can be checked in and reviewed by its sources.
"""

from __future__ import annotations

import argparse
import csv
import os
import sqlite3
import sys
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent.parent / "data"
SCHEMA_PATH = DATA_DIR / "schema.sql"
SEED_PATH = DATA_DIR / "users.csv"
BUNDLE_PATH = DATA_DIR / "users.db"


def read_seed(seed_path: Path) -> list[tuple[int, str]]:
    """Return the (id, name) rows of the seed CSV, validated."""
    with seed_path.open(newline="", encoding="utf-8") as seed_file:
        rows = [(int(row["id"]), row["name"]) for row in csv.DictReader(seed_file)]
    ids = [row_id for row_id, _ in rows]
    if len(set(ids)) != len(ids):
        raise ValueError(f"{seed_path}: duplicate ids")
    return rows


def build(out_path: Path, schema_path: Path = SCHEMA_PATH, seed_path: Path = SEED_PATH) -> None:
    """Write the database to out_path atomically (temp file in the same directory, then rename)."""
    fd, tmp_name = tempfile.mkstemp(dir=out_path.parent, prefix=f".{out_path.name}.", suffix=".tmp")
    os.close(fd)
    os.unlink(tmp_name)  # sqlite3 must create the file itself
    try:
        connection = sqlite3.connect(tmp_name)
        try:
            connection.executescript(schema_path.read_text(encoding="utf-8"))
            connection.executemany("INSERT INTO users (id, name) VALUES (?, ?)", read_seed(seed_path))
            connection.commit()
            connection.execute("VACUUM")  # compact, and make page layout independent of insert history
        finally:
            connection.close()
        os.replace(tmp_name, out_path)
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def dump(db_path: Path) -> Iterator[str]:
    """The logical content of a database: schema and rows as SQL text."""
    connection = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        yield from connection.iterdump()
    finally:
        connection.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=BUNDLE_PATH, help="where to write (default: %(default)s)")
    parser.add_argument("--check", action="store_true", help="compare --out with the sources instead of writing")
    args = parser.parse_args(argv)

    if not args.check:
        build(args.out)
        print(f"wrote {args.out}")
        return 0

    if not args.out.exists():
        print(f"{args.out} is missing: run `make db`", file=sys.stderr)
        return 1
    with tempfile.TemporaryDirectory() as tmp_dir:
        expected = Path(tmp_dir) / "expected.db"
        build(expected)
        if list(dump(expected)) != list(dump(args.out)):
            print(f"{args.out} does not match {SCHEMA_PATH.name} + {SEED_PATH.name}: run `make db`", file=sys.stderr)
            return 1
    print(f"{args.out} matches its sources")
    return 0


if __name__ == "__main__":
    sys.exit(main())
