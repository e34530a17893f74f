"""Flask + SQLAlchemy users service. `create_app` builds it; handler.py runs it on Lambda."""

from __future__ import annotations

import logging

from flask import Flask

from app.config import SETTINGS_KEY, Settings
from app.db import ENGINE_KEY, create_db_engine, database_url, safe_url
from app.errors import register_error_handlers
from app.logs import LOGGER_NAME, configure_logging
from app.sqlite_bundle import ensure_local_copy
from app.stage_paths import StagePathMiddleware
from app.users import bp as users_bp

__all__ = ["create_app"]


def create_app(settings: Settings | None = None) -> Flask:
    """Build the app and its engine. Without `settings`, they are read from the environment.

    With no DATABASE_URL, the bundled SQLite file is copied to /tmp first (the code
    directory is read-only on Lambda). The engine is stored in `app.extensions["engine"]`,
    the settings in `app.extensions["settings"]`.
    """
    if settings is None:
        settings = Settings.from_env()
    configure_logging(settings.log_level)

    copied = None
    if settings.database_url is None:
        copied = ensure_local_copy(settings.bundled_db_path, settings.sqlite_copy_path)
    engine = create_db_engine(settings)

    app = Flask(__name__)
    app.extensions[ENGINE_KEY] = engine
    app.extensions[SETTINGS_KEY] = settings
    app.register_blueprint(users_bp)
    register_error_handlers(app)
    app.wsgi_app = StagePathMiddleware(app.wsgi_app)  # type: ignore[method-assign]

    logging.getLogger(LOGGER_NAME).info(
        "app initialised",
        extra={
            "fields": {
                "database": safe_url(database_url(settings)),
                "bundle_copied": copied,
                "pool_size": settings.pool_size,
                "max_overflow": settings.max_overflow,
            }
        },
    )
    return app
