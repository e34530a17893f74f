"""The engine factory: one pooled engine per process, and how its URL is shown in logs."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any
from urllib.parse import quote, quote_plus, unquote

from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool, QueuePool

from app.config import Settings
from app.storage.queries import WAIT_LIMIT_KEY, budget_seconds, skip_leading_results

__all__ = [
    "create_db_engine",
    "password_forms",
    "safe_url",
    "sqlite_file_url",
    "sqlite_read_only_url",
]

# libpq's connect_timeout is whole seconds, and it treats 1 as 2.
_MIN_CONNECT_TIMEOUT_SECONDS: int = 2
# libpq keywords: probe a connection after 1 s without traffic, then every second, so a peer
# gone while we wait on a statement is noticed within tcp_user_timeout.
_KEEPALIVES: dict[str, int] = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1}
_MIN_TCP_USER_TIMEOUT_MS: int = 1000


def sqlite_read_only_url(path: Path) -> URL:
    """URL of a SQLite file opened read-only: the /tmp copy is a snapshot, not a store."""
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})


def sqlite_file_url(url: URL) -> tuple[URL, Path | None]:
    """A SQLite URL as opened: a file is opened as a URI with mode=rw (or the URL's mode=ro), so
    a missing file is an error instead of a new empty database. Also the file's absolute path
    (None: in memory). A relative path is taken from the working directory, once."""
    database = url.database or ""
    query = dict(url.query)
    if query.get("uri") == "true" and database.startswith("file:"):
        path_part = database.removeprefix("file:").split("?", 1)[0]
        if query.get("mode") == "memory" or not path_part:
            return url, None
        if query.get("mode") != "ro":
            query["mode"] = "rw"
        return url.set(query=query), Path(unquote(path_part)).absolute()
    if database in ("", ":memory:"):
        return url, None
    path = Path(database).absolute()
    return url.set(database=f"file:{quote(str(path))}", query={**query, "mode": "rw", "uri": "true"}), path


def _is_secret_parameter(name: str) -> bool:
    # libpq takes `password` and `sslpassword` as query parameters too (…/db?password=…).
    return "password" in name.lower()


def safe_url(url: URL) -> str:
    """The URL as text with any password masked, in the user info or the query, for logs."""
    secret_keys = [key for key in url.query if _is_secret_parameter(key)]
    if secret_keys:
        url = url.update_query_dict(dict.fromkeys(secret_keys, "***"))
    return url.render_as_string(hide_password=True)


def password_forms(url: URL) -> list[str]:
    """Every password in `url` as it may appear in text: raw, as SQLAlchemy renders it, percent-encoded."""
    passwords = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _is_secret_parameter(key):
            passwords.extend(v for v in ((value,) if isinstance(value, str) else value) if v)
    forms: list[str] = []
    for password in passwords:
        rendered = URL.create("x", username="u", password=password, host="h").render_as_string(hide_password=False)
        forms += [
            password,
            rendered.removeprefix("x://u:").removesuffix("@h"),
            quote(password, safe=""),
            quote_plus(password),
        ]
    return forms


def create_db_engine(settings: Settings, url: URL) -> Engine:
    """Create the process-wide engine on `url`; it connects lazily, on the first request."""
    is_sqlite = url.get_backend_name() == "sqlite"
    # The app only reads, one statement per round trip: on PostgreSQL in autocommit, so a read
    # is not wrapped in BEGIN ... ROLLBACK round trips (docs/postgresql.md, "round trips").
    options: dict[str, Any] = {} if is_sqlite else {"isolation_level": "AUTOCOMMIT"}
    if settings.db_pool == "null":
        engine = create_engine(url, poolclass=NullPool, **options)
    else:
        engine = create_engine(
            url,
            poolclass=QueuePool,
            pool_size=settings.pool_size,
            max_overflow=settings.max_overflow,
            pool_timeout=settings.pool_timeout,
            pool_recycle=settings.pool_recycle,
            pool_pre_ping=settings.pool_pre_ping,
            **options,
        )
    event.listen(engine, "do_connect", _bounded_by_deadline_sqlite if is_sqlite else _bounded_by_deadline_postgres)
    if not is_sqlite:
        event.listen(engine, "after_cursor_execute", skip_leading_results)
        if settings.db_iam_auth:
            event.listen(engine, "do_connect", _iam_token_password)
    return engine


def _iam_token_password(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    # Imported here: boto3 only when DB_IAM_AUTH is on.
    from app.storage.iam import auth_token, require_tls

    cparams["password"] = auth_token(str(cparams["host"]), int(cparams.get("port") or 5432), str(cparams["user"]))
    cparams["sslmode"] = require_tls(cparams.get("sslmode"))


def _bounded_by_deadline_sqlite(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    # How long a read waits on a writer's lock before "database is locked" (a 503).
    budget = budget_seconds()
    cparams["timeout"] = budget
    record.info[WAIT_LIMIT_KEY] = int(budget * 1000)


def _bounded_by_deadline_postgres(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
    budget = budget_seconds()
    # Nothing here is session state on the server: a transaction-mode pooler (PgBouncer, RDS
    # Proxy) refuses startup `options` and hands the server connection to other clients between
    # transactions. These are libpq's client-side bounds; the statement's own time limit travels
    # with each read (app/storage/queries.py). A server that accepts and never answers ends
    # before the function's timeout: 503 JSON instead of API Gateway's 502.
    if dialect.driver == "psycopg":
        # psycopg prepares a statement on its 5th execution: named prepared statements are
        # session state a pooler may not have on the next server connection.
        cparams.setdefault("prepare_threshold", None)
    cparams["connect_timeout"] = max(_MIN_CONNECT_TIMEOUT_SECONDS, math.floor(budget))
    # A server or network that vanishes under an open connection (failover, a lost route)
    # answers nothing, not even statement_timeout's error: the kernel would retransmit for ~15
    # minutes. Unacknowledged data, or unanswered keepalive probes while a statement runs, end
    # the connection after half the budget, leaving the rest for the one retry. A URL's own
    # values (…?keepalives_idle=…) win.
    cparams.setdefault("tcp_user_timeout", max(_MIN_TCP_USER_TIMEOUT_MS, int(budget * 500)))
    for name, value in _KEEPALIVES.items():
        cparams.setdefault(name, value)
