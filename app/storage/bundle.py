"""Copy the bundled SQLite database to a writable place (Lambda's code directory is read-only)."""

from __future__ import annotations

import filecmp
import os
import shutil
import tempfile
from pathlib import Path

__all__ = ["BundleMissingError", "ensure_local_copy"]


class BundleMissingError(FileNotFoundError):
    """Raised at cold start when the bundled database file is not in the deployment package."""


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
