"""The users blueprint: GET /users."""

from __future__ import annotations

from flask import Blueprint, Response, current_app

from app.db import ENGINE_KEY, fetch_user_names

__all__ = ["bp"]

bp = Blueprint("users", __name__)


@bp.get("/users")
def list_users() -> Response:
    """Every user's name, comma-joined, as UTF-8 plain text."""
    names = fetch_user_names(current_app.extensions[ENGINE_KEY])
    return Response(",".join(names), mimetype="text/plain")
