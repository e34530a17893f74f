"""The per-request Flask code: the /users view, its pages and cursors, and the JSON errors."""

from __future__ import annotations

from flask import Flask

from app.config import SETTINGS_KEY
from app.web.cors import register_cors
from app.web.errors import register_error_handlers
from app.web.openapi import register_openapi
from app.web.users import bp

__all__ = ["register_web"]


def register_web(app: Flask) -> None:
    """Add the routes, CORS and the JSON error handlers to `app` (its settings are in `app.extensions`)."""
    app.register_blueprint(bp)
    register_openapi(app)
    register_cors(app, app.extensions[SETTINGS_KEY].cors_allow_origins)
    register_error_handlers(app)
