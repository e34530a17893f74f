"""Types and Lambda platform facts shared across the package."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = [
    "ALB_RESPONSE_LIMIT",
    "DATABASE_KEY",
    "LAMBDA_RESPONSE_LIMIT",
    "RESPONSE_LIMIT_KEY",
    "HasEngine",
    "LambdaContext",
    "LambdaResponse",
    "PooledEngine",
]

# At the Lambda boundary responses are plain JSON objects.
LambdaResponse = dict[str, Any]

# The largest response JSON the invoker accepts: Lambda's synchronous limit (API Gateway,
# function URLs in BUFFERED mode) and an ALB target's. "6 MB" and "1 MB" read as decimal
# megabytes, the smaller reading: nothing in AWS's documentation promises 6 MiB.
LAMBDA_RESPONSE_LIMIT: int = 6_000_000
ALB_RESPONSE_LIMIT: int = 1_000_000
# WSGI environ key under which the adapter passes the request's response limit to the app.
RESPONSE_LIMIT_KEY: str = "users_api.response_limit"
# Key of the app's Database (app/storage/) in `Flask.extensions`: here, so that the adapter
# finds it without importing storage.
DATABASE_KEY: str = "database"


class LambdaContext(Protocol):
    """The part of the Lambda context object this service reads."""

    @property
    def aws_request_id(self) -> str: ...


class PooledEngine(Protocol):
    """An engine as the invocation log line reads it: its connection pool."""

    @property
    def pool(self) -> object: ...


class HasEngine(Protocol):
    """The app's Database (app/storage/database.py) as the log line reads it: None until an engine loads."""

    @property
    def engine(self) -> PooledEngine | None: ...
