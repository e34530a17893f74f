"""Copy the bundled SQLite database to a writable place (Lambda's code directory is read-only)."""

from __future__ import annotations

import filecmp
import hashlib
import logging
import os
import shutil
import tempfile
from pathlib import Path

from app.config import StartupError
from app.logs import LOGGER_NAME
from app.storage.sqlite_file import InvalidSqliteFileError, verify_sqlite_file

__all__ = [
    "BundleCopy",
    "BundleInvalidError",
    "BundleMissingError",
    "CopyPathError",
    "ensure_local_copy",
    "verify_bundle",
]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")


class BundleMissingError(FileNotFoundError, StartupError):
    """Raised at cold start when the bundled database file is not in the deployment package."""


class BundleInvalidError(RuntimeError, StartupError):
    """Raised at cold start when the bundled database is not a usable users database: a deploy mistake."""


class CopyPathError(OSError, StartupError):
    """Raised when the copy cannot be written where SQLITE_COPY_PATH says (an OSError: `repair` expects one)."""


def verify_bundle(copy: Path) -> None:
    """Check the /tmp copy once per container: SQLite header, `PRAGMA quick_check`, the `users` schema.

    SQLite's own checks rather than a checksum: they also hold for a BUNDLED_DB_PATH that no
    build recorded, and run once per container on a small file.
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
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as exc:
        raise _copy_path_error(target, exc) from None
    os.close(fd)
    try:
        # No fsync: /tmp does not outlive the execution environment, so durability buys nothing.
        shutil.copyfile(bundle, tmp_name)
        os.replace(tmp_name, target)
    except BaseException as exc:
        Path(tmp_name).unlink(missing_ok=True)
        if isinstance(exc, OSError) and not isinstance(exc, BundleMissingError):
            raise _copy_path_error(target, exc) from None
        raise
    return True


def _copy_path_error(target: Path, exc: OSError) -> CopyPathError:
    # Named by the setting and its value, not by the temp file the OSError was about.
    reason = exc.strerror or type(exc).__name__
    return CopyPathError(
        f"SQLITE_COPY_PATH {str(target)!r} cannot be written ({reason}): "
        "set it to a file in a writable directory (on Lambda, under /tmp)"
    )


class BundleCopy:
    """The bundled file and its /tmp copy: made and checked at cold start, put back when lost."""

    def __init__(self, bundle: Path, copy: Path) -> None:
        self.bundle = bundle
        self.copy = copy
        # The bundled file never changes while the code is deployed: hashed once, by the first prepare().
        self.sha256: str | None = None

    def prepare(self) -> bool:
        """Make (or keep) the copy and check it; return whether it was written. Raises BundleInvalidError."""
        copied = ensure_local_copy(self.bundle, self.copy)
        self._verify()
        if self.sha256 is None:
            with self.bundle.open("rb") as file:
                self.sha256 = hashlib.file_digest(file, "sha256").hexdigest()
        return copied

    def restore_if_lost(self) -> bool:
        """Put back a copy that was deleted or replaced; say whether it did (False: the copy is intact).

        Lambda may clean /tmp, or a neighbour overwrite it, while warm.
        """
        try:
            copied = ensure_local_copy(self.bundle, self.copy)
        except OSError:
            return False
        if copied:
            self._verify()
        return copied

    def _verify(self) -> None:
        try:
            verify_bundle(self.copy)
        except BundleInvalidError as exc:
            # A deploy mistake, not a transient outage: fail the cold start, saying which file and why.
            problem = f"bundled database {self.bundle}: {exc}"
            _logger.error(
                "bundled database invalid", extra={"fields": {"bundled_db_path": str(self.bundle), "problem": problem}}
            )
            raise BundleInvalidError(problem) from None
