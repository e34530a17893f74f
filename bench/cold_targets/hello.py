"""Reference: a bare Flask app under serverless-wsgi answering "hello". No database, no logging."""

from __future__ import annotations

from typing import Any

import serverless_wsgi
from flask import Flask

app = Flask(__name__)


@app.get("/users")
def hello() -> str:
    return "hello"


def handler(event: dict[str, Any], context: Any) -> dict[str, Any]:
    response: dict[str, Any] = serverless_wsgi.handle_request(app, event, context)
    return response
