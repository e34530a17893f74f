"""The engine factory: one pooled engine per process, its connections bounded by the read's budget."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event
from sqlalchemy.engine import URL
from sqlalchemy.pool import NullPool, QueuePool

from app.config import Settings

__all__ = ["LEADING_RESULTS_KEY", "WAIT_LIMIT_KEY", "create_db_engine", "skip_leading_results"]

# SQLite: the busy timeout (ms) a connection was made with, in its record's info.
WAIT_LIMIT_KEY: str = "users_api_wait_limit_ms"
# Execution option: how many results of a multi-statement string precede the rows (see
# skip_leading_results).
LEADING_RESULTS_KEY: str = "users_api_leading_results"

# libpq's connect_timeout is whole seconds, and it treats 1 as 2.
_MIN_CONNECT_TIMEOUT_SECONDS: int = 2
# libpq keywords: probe a connection after 1 s without traffic, then every second, so a peer
# gone while we wait on a statement is noticed within tcp_user_timeout.
_KEEPALIVES: dict[str, int] = {"keepalives": 1, "keepalives_idle": 1, "keepalives_interval": 1}
_MIN_TCP_USER_TIMEOUT_MS: int = 1000


def skip_leading_results(
    conn: Connection, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
) -> None:
    """after_cursor_execute hook: move the cursor past a multi-statement string's leading results
    (SET LOCAL's), so SQLAlchemy reads the SELECT's rows."""
    for _ in range(context.execution_options.get(LEADING_RESULTS_KEY, 0)):
        cursor.nextset()


def create_db_engine(settings: Settings, url: URL, budget: Callable[[], float]) -> Engine:
    """Create the process-wide engine on `url`; it connects lazily, on the first request.

    `budget()`: the seconds the read being served has left (app/storage/queries.py,
    read_budget_seconds), which bound each connection made for it.
    """
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
    bound = _bounded_by_budget_sqlite if is_sqlite else _bounded_by_budget_postgres

    def bounded_by_budget(dialect: Any, record: Any, cargs: Any, cparams: dict[str, Any]) -> None:
        bound(dialect, record, cparams, budget())

    event.listen(engine, "do_connect", bounded_by_budget)
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


def _bounded_by_budget_sqlite(dialect: Any, record: Any, cparams: dict[str, Any], budget: float) -> None:
    # How long a read waits on a writer's lock before "database is locked" (a 503).
    cparams["timeout"] = budget
    record.info[WAIT_LIMIT_KEY] = int(budget * 1000)


def _bounded_by_budget_postgres(dialect: Any, record: Any, cparams: dict[str, Any], budget: float) -> None:
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
