"""The per-request Flask code: the /users view, its pages and cursors, and the JSON errors."""

from __future__ import annotations

from flask import Flask

from app.web.errors import register_error_handlers
from app.web.users import bp

__all__ = ["register_web"]


def register_web(app: Flask) -> None:
    """Add the routes and the JSON error handlers to `app`."""
    app.register_blueprint(bp)
    register_error_handlers(app)
