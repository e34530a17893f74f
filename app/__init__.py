"""Flask + SQLAlchemy users service. `create_app` builds it; handler.py runs it on Lambda."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from flask import Flask
from sqlalchemy.engine import URL, make_url

from app.config import SETTINGS_KEY, Settings
from app.database_secret import fetch_database_url
from app.db import ENGINE_KEY, create_db_engine, password_forms, safe_url, sqlite_read_only_url
from app.errors import register_error_handlers
from app.logs import LOGGER_NAME, configure_logging, redact
from app.snapshot_database import SnapshotDatabase
from app.sqlite_bundle import ensure_local_copy
from app.stage_paths import StagePathMiddleware
from app.users import bp as users_bp

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic) -> Flask:
    """Build the app and its engine. Without `settings`, they are read from the environment.

    The database, in order of the settings that choose it: a SQLite snapshot downloaded
    from S3 (DB_SNAPSHOT_S3_URI), a URL read from Secrets Manager or Parameter Store,
    DATABASE_URL, else the bundled SQLite file copied to /tmp (the code directory is
    read-only on Lambda). The engine is stored in `app.extensions["engine"]`, the
    settings in `app.extensions["settings"]`. `clock` is
    what the snapshot refresh measures time with (tests pass a fake one).
    """
    if settings is None:
        settings = Settings.from_env()
    configure_logging(settings.log_level)

    app = Flask(__name__)
    app.extensions[SETTINGS_KEY] = settings
    app.register_blueprint(users_bp)
    register_error_handlers(app)
    app.wsgi_app = StagePathMiddleware(app.wsgi_app)  # type: ignore[method-assign]

    fields: dict[str, Any]
    if settings.db_snapshot_s3_uri is not None:
        snapshot = SnapshotDatabase(settings, clock=clock)
        # A failed download does not fail the cold start: requests get 503 until a retry succeeds.
        snapshot.start()
        snapshot.attach(app)
        fields = {"database_source": "DB_SNAPSHOT_S3_URI", **snapshot.describe()}
    else:
        url, source, copied = _database(settings)
        app.extensions[ENGINE_KEY] = create_db_engine(settings, url)
        fields = {"database_source": source, "database": safe_url(url), "bundle_copied": copied}

    logging.getLogger(LOGGER_NAME).info(
        "app initialised",
        extra={"fields": {**fields, "pool_size": settings.pool_size, "max_overflow": settings.max_overflow}},
    )
    return app


def _database(settings: Settings) -> tuple[URL, str, bool | None]:
    """(URL, the setting that chose it, whether the bundle was copied) for a database that is not a snapshot."""
    from_secret = fetch_database_url(settings)
    if from_secret is not None:
        url, source = from_secret
        return url, source, None
    if settings.database_url is not None:
        url = make_url(settings.database_url)
        redact(*password_forms(url))
        return url, "DATABASE_URL", None
    copied = ensure_local_copy(settings.bundled_db_path, settings.sqlite_copy_path)
    return sqlite_read_only_url(settings.sqlite_copy_path), "bundle", copied
