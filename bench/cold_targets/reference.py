"""Reference: Flask + SQLAlchemy + serverless-wsgi serving the same query, written the plainest way.

Copies the bundled database to its /tmp path like the project does (the code directory is
read-only on Lambda), but has none of the project's settings, checks, JSON errors or logs.
It reads the two paths from the variables the project uses, so both serve the same files.
"""

from __future__ import annotations

import os
import shutil
from typing import Any

import serverless_wsgi
from flask import Flask, Response
from sqlalchemy import create_engine, text

_copy = os.environ["SQLITE_COPY_PATH"]
os.makedirs(os.path.dirname(_copy), exist_ok=True)
shutil.copyfile(os.environ["BUNDLED_DB_PATH"], _copy)
engine = create_engine(f"sqlite:///file:{_copy}?mode=ro&uri=true")
app = Flask(__name__)


@app.get("/users")
def users() -> Response:
    with engine.connect() as conn:
        names = conn.execute(text("SELECT name FROM users ORDER BY rowid")).scalars().all()
    return Response(",".join(names), mimetype="text/plain")


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = serverless_wsgi.handle_request(app, event, context)
    return response
