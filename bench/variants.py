"""The handlers compared warm, each a `(event, context) -> response` callable on the same database.

The project's own variants are built with `make_handler`, the function handler.py builds
`handler.handler` with, around apps made by `create_app`: no copy of the handler can drift.
"""

from __future__ import annotations

import importlib
import logging
import os
import sqlite3
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import serverless_wsgi
from flask import Flask, Response
from sqlalchemy import Engine

from app import create_app
from app.adapter import make_handler
from app.config import Settings
from app.logs import LOGGER_NAME
from app.storage import DATABASE_KEY, Database, open_database
from app.storage.queries import fetch_users_after
from app.storage.urls import sqlite_read_only_url
from app.web.users import FETCH_CHUNK_ROWS
from bench.workload import USERS_PATH, build_users_db, handler_environ, load_users_event

__all__ = ["FloorHandler", "Variant", "app_with_engine_per_request", "engine_of", "import_handler", "warm_variants"]

Serve = Callable[[dict[str, Any], Any], Any]
_SELECT_NAMES: str = "SELECT name FROM users ORDER BY rowid"


def _nothing() -> None:
    pass


@dataclass
class Variant:
    """One thing to time. `activate`/`deactivate` run around each batch, outside the timing."""

    key: str
    label: str
    serve: Serve
    # Whether `serve` returns a proxy response whose body must equal the floor's.
    returns_users: bool = True
    activate: Callable[[], None] = field(default=_nothing)
    deactivate: Callable[[], None] = field(default=_nothing)


class FloorHandler:
    """The practical lower bound: sqlite3, one persistent connection, a hand-built proxy response."""

    def __init__(self, db_path: Path, *, etag: str | None = None) -> None:
        uri = f"file:{quote(str(db_path))}?mode=ro"
        self._connection = sqlite3.connect(uri, uri=True, check_same_thread=False)
        # The handler's tag for the one request the floor answers (it depends on the database's
        # identity and the query, both fixed here): a constant header, as the handler's costs no read.
        self._etag_header = {} if etag is None else {"ETag": [etag]}

    def close(self) -> None:
        self._connection.close()

    def __call__(self, event: dict[str, Any], context: Any) -> dict[str, Any]:
        if event.get("httpMethod") != "GET" or event.get("path") != USERS_PATH:
            return {"statusCode": 404, "headers": {}, "body": "", "isBase64Encoded": False}
        body = ",".join([name for (name,) in self._connection.execute(_SELECT_NAMES)])
        content_length = str(len(body.encode("utf-8")))
        return {
            "statusCode": 200,
            "multiValueHeaders": {
                "Content-Type": ["text/plain; charset=utf-8"],
                "Content-Length": [content_length],
                "Vary": ["Accept, Accept-Encoding"],
                **self._etag_header,
            },
            "body": body,
            "isBase64Encoded": False,
        }

    def names(self) -> list[str]:
        return [name for (name,) in self._connection.execute(_SELECT_NAMES)]


def import_handler(workdir: Path, rows: int) -> ModuleType:
    """Build a `rows`-user bundle in `workdir` and import `handler` on it, as a cold start would."""
    bundle = build_users_db(workdir / "bundle.db", rows)
    environ = handler_environ(bundle, workdir / "lambda-tmp" / "users.db")
    os.environ.clear()
    os.environ.update(environ)
    return importlib.import_module("handler")


def engine_of(app: Flask) -> Engine:
    """The engine `app` serves from (its Database owns it)."""
    database: Database = app.extensions[DATABASE_KEY]
    assert database.engine is not None
    return database.engine


def _first_page(engine: Engine) -> list[str]:
    """What GET /users reads for a small table: one keyset chunk, through the pool."""
    with engine.connect() as conn:
        return [row[1] for row in fetch_users_after(conn, None, FETCH_CHUNK_ROWS)]


def app_with_engine_per_request(settings: Settings) -> Flask:
    """The app, but a new Database (engine and pool) for every request, disposed after it: the anti-pattern."""
    app = create_app(settings)
    if settings.database_url is None:
        # The cold start copied the bundle; per request only the engine is new, not the copy.
        copy_url = sqlite_read_only_url(settings.sqlite_copy_path).render_as_string(hide_password=False)
        settings = replace(settings, database_url=copy_url)

    @app.before_request
    def _new_database() -> None:
        app.extensions[DATABASE_KEY] = open_database(settings)

    @app.teardown_request
    def _dispose_database(_: BaseException | None) -> None:
        app.extensions[DATABASE_KEY].dispose()

    return app


# What Chrome and Firefox send for a page load.
BROWSER_ACCEPT: str = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def _browser_event() -> dict[str, Any]:
    event = load_users_event()
    event["headers"]["Accept"] = BROWSER_ACCEPT
    event["multiValueHeaders"]["Accept"] = [BROWSER_ACCEPT]
    return event


def _if_none_match_event(serve: Serve) -> dict[str, Any]:
    """The users event sent again with the ETag its 200 carried: the handler answers 304."""
    event = load_users_event()
    headers = {name.lower(): values for name, values in serve(load_users_event(), None)["multiValueHeaders"].items()}
    event["headers"]["If-None-Match"] = headers["etag"][0]
    event["multiValueHeaders"]["If-None-Match"] = headers["etag"]
    return event


def _with_event(serve: Serve, event: dict[str, Any], _: dict[str, Any], context: Any) -> Any:
    return serve(event, context)


def _hello_app() -> Flask:
    hello = Flask("hello")

    @hello.get(USERS_PATH)
    def _hello() -> Response:
        return Response("hello", mimetype="text/plain")

    return hello


def _set_log_level(level: int) -> Callable[[], None]:
    return lambda: logging.getLogger(LOGGER_NAME).setLevel(level)


def warm_variants(module: ModuleType, floor: FloorHandler) -> list[Variant]:
    """Every warm variant, the project's handler second; all share the handler module's database copy."""
    import apig_wsgi  # bench dependency group; imported here so the tests need not install it

    settings = Settings.from_env()
    pooled_app: Flask = module.app
    hello = _hello_app()
    pooled_engine = engine_of(pooled_app)
    return [
        Variant("floor", "floor: sqlite3 + hand-built response", floor),
        Variant("handler", "handler.handler (pooled engine)", module.handler),
        Variant(
            "handler_browser_accept",
            "handler.handler, a browser's Accept header",
            partial(_with_event, module.handler, _browser_event()),
        ),
        Variant(
            "handler_not_modified",
            "handler.handler, If-None-Match matching: 304, no read",
            partial(_with_event, module.handler, _if_none_match_event(module.handler)),
            returns_users=False,
        ),
        Variant(
            "nullpool",
            "handler.handler, NullPool",
            make_handler(create_app(replace(settings, db_pool="null"))),
        ),
        Variant(
            "engine_per_request",
            "handler.handler, engine per request",
            make_handler(app_with_engine_per_request(settings)),
        ),
        Variant("apig_wsgi", "same app under apig-wsgi (pooled)", apig_wsgi.make_lambda_handler(pooled_app)),
        Variant(
            "serverless_wsgi",
            "same app under serverless-wsgi, no invocation wrapper",
            lambda event, context: serverless_wsgi.handle_request(pooled_app, event, context),
        ),
        Variant(
            "handler_quiet",
            "handler.handler, LOG_LEVEL=WARNING (no invocation line)",
            module.handler,
            activate=_set_log_level(logging.WARNING),
            deactivate=_set_log_level(logging.INFO),
        ),
        Variant(
            "hello_serverless_wsgi",
            "bare Flask 'hello' under serverless-wsgi",
            lambda event, context: serverless_wsgi.handle_request(hello, event, context),
            returns_users=False,
        ),
        Variant(
            "hello_apig_wsgi",
            "bare Flask 'hello' under apig-wsgi",
            apig_wsgi.make_lambda_handler(hello),
            returns_users=False,
        ),
        Variant(
            "query_sqlalchemy",
            "query only: the app's first-page query on the pooled engine",
            lambda event, context: _first_page(pooled_engine),
            returns_users=False,
        ),
        Variant(
            "query_sqlite3",
            "query only: sqlite3, persistent connection",
            lambda event, context: floor.names(),
            returns_users=False,
        ),
    ]
