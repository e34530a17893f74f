"""Flask + SQLAlchemy users service. `create_app` builds it; handler.py runs it on Lambda."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from flask import Flask

from app.config import SETTINGS_KEY, Settings
from app.logs import LOGGER_NAME, configure_logging
from app.storage import DATABASE_KEY, open_database
from app.web import register_web

__all__ = ["create_app"]


def create_app(settings: Settings | None = None, *, clock: Callable[[], float] = time.monotonic) -> Flask:
    """Build the app and its database. Without `settings`, they are read from the environment.

    The settings go in `app.extensions["settings"]`, the Database that owns the engine in
    `app.extensions["database"]` (app/storage/database.py says how it is chosen). `clock` is
    what an S3 snapshot's refresh measures time with (tests pass a fake one).
    """
    if settings is None:
        settings = Settings.from_env()
    configure_logging(settings.log_level, settings.log_format)

    app = Flask(__name__)
    app.extensions[SETTINGS_KEY] = settings
    register_web(app)
    database = open_database(settings, clock=clock)
    app.extensions[DATABASE_KEY] = database
    if settings.snap_start:
        from app.snapstart import register_snapstart_hooks

        register_snapstart_hooks(database)

    logging.getLogger(LOGGER_NAME).info(
        "app initialised",
        extra={
            "fields": {**database.describe(), "pool_size": settings.pool_size, "max_overflow": settings.max_overflow}
        },
    )
    return app
