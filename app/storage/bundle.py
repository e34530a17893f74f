"""Copy the bundled SQLite database to a writable place (Lambda's code directory is read-only)."""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from pathlib import Path

from app.storage.sqlite_file import InvalidSqliteFileError, verify_sqlite_file

__all__ = ["BundleInvalidError", "BundleMissingError", "ensure_local_copy", "verify_bundle"]


class BundleMissingError(FileNotFoundError):
    """Raised at cold start when the bundled database file is not in the deployment package."""


class BundleInvalidError(RuntimeError):
    """Raised at cold start when the bundled database is not a usable users database: a deploy mistake."""


def verify_bundle(copy: Path) -> None:
    """Check the /tmp copy once per container: SQLite header, `PRAGMA quick_check`, the `users` schema.

    SQLite's own checks rather than a checksum: they also hold for a BUNDLED_DB_PATH that no
    build recorded, and cost well under a millisecond for the shipped file (docs/design.md).
    """
    try:
        verify_sqlite_file(copy)
    except InvalidSqliteFileError as exc:
        raise BundleInvalidError(str(exc)) from None


def ensure_local_copy(bundle: Path, target: Path) -> bool:
    """Make `target` a byte-identical copy of `bundle`; return whether a copy was written.

    Copies only when `target` is missing or differs (a copy left in /tmp by an older
    bundle is replaced). The copy is written to a temp file beside `target` and renamed
    over it, so concurrent cold starts sharing /tmp never see a half-written file and a
    process that already opened the old file keeps reading it. `bundle` is only read.
    """
    if not bundle.is_file():
        raise BundleMissingError(f"bundled database not found at {bundle}; build it with `make db`")
    if target.is_file() and filecmp.cmp(bundle, target, shallow=False):
        return False
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    os.close(fd)
    try:
        # No fsync: /tmp does not outlive the execution environment, so durability buys nothing.
        shutil.copyfile(bundle, tmp_name)
        os.replace(tmp_name, target)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise
    return True
