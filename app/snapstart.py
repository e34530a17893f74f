"""SnapStart runtime hooks: nothing made before the snapshot is reused after a restore.

Lambda snapshots the initialised environment once and restores it for many; the pool's
connections, the S3 client and the /tmp copy would all be shared by every restored copy.
The hooks use AWS's snapshot-restore-py, which the Python managed runtimes include (and
awslambdaric, which runs them, depends on); it is imported only when SnapStart is on.
"""

from __future__ import annotations

import logging

from app.logs import LOGGER_NAME
from app.storage import Database

__all__ = ["register_snapstart_hooks"]

_logger = logging.getLogger(f"{LOGGER_NAME}.storage")


def register_snapstart_hooks(database: Database) -> None:
    """Close connections before the snapshot; reopen and re-check after each restore."""
    import snapshot_restore_py

    def before_snapshot() -> None:
        database.before_snapshot()
        _logger.info("before snapshot: connections closed", extra={"fields": database.describe()})

    def after_restore() -> None:
        database.after_restore()
        _logger.info("after restore: ready", extra={"fields": database.describe()})

    snapshot_restore_py.register_before_snapshot(before_snapshot)
    snapshot_restore_py.register_after_restore(after_restore)
