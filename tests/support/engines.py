"""Reaching an app's engine and watching it: its pool, the connections it opens, the statements it runs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from flask import Flask
from sqlalchemy import Engine, event
from sqlalchemy.pool import QueuePool

from app.storage import DATABASE_KEY, Database

__all__ = ["ConnectCounter", "StatementCounter", "count_connects", "engine_of", "queue_pool"]


def engine_of(application: Flask) -> Engine:
    """The engine `application` serves from now (its Database owns it)."""
    database: Database = application.extensions[DATABASE_KEY]
    assert database.engine is not None, "no database loaded"
    return database.engine


def queue_pool(engine: Engine) -> QueuePool:
    """The engine's pool, which must be a QueuePool (the default)."""
    assert isinstance(engine.pool, QueuePool)
    return engine.pool


@dataclass
class ConnectCounter:
    """Counts DBAPI connections an engine opens."""

    count: int = 0


def count_connects(engine: Engine) -> ConnectCounter:
    counter = ConnectCounter()

    def on_connect(*_: Any) -> None:
        counter.count += 1

    event.listen(engine, "connect", on_connect)
    return counter


class StatementCounter:
    """Counts the SQL statements an engine runs."""

    def __init__(self, engine: Engine) -> None:
        self.count = 0
        self._engine = engine
        event.listen(engine, "before_cursor_execute", self._on_execute)

    def _on_execute(self, *_: Any) -> None:
        self.count += 1

    def close(self) -> None:
        event.remove(self._engine, "before_cursor_execute", self._on_execute)
