"""Where the engine comes from: the bundled SQLite copy, a URL, a secret, or an S3 snapshot."""

from __future__ import annotations

from app.storage.database import DATABASE_KEY, Database, DatabaseUnavailableError, open_database

__all__ = ["DATABASE_KEY", "Database", "DatabaseUnavailableError", "open_database"]
