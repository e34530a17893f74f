"""Types and Lambda platform facts shared across the package."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

__all__ = [
    "ALB_RESPONSE_LIMIT",
    "DATABASE_KEY",
    "LAMBDA_RESPONSE_LIMIT",
    "RESPONSE_LIMIT_KEY",
    "BodyMeter",
    "HasEngine",
    "LambdaContext",
    "LambdaResponse",
    "NameFormat",
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


class NameFormat(Protocol):
    """A representation of a page of names (text or JSON, app/web/users.py). Pieces (runs of
    names) are joined by one comma."""

    name: str
    mimetype: str
    # Escaped size of everything around the names, `next` at its longest.
    framing_size: int

    def join(self, names: list[str]) -> str:
        """One piece: `names` in this format, separated by commas."""
        ...

    def encode(self, name: str) -> str:
        """One name in this format (a piece of one)."""
        ...

    def body(self, pieces: Sequence[str], next_cursor: str | None) -> str:
        """The response body: the pieces in order, framed."""
        ...


class BodyMeter(Protocol):
    """Counts a page's body, piece by piece, against the room the response limit leaves it: as
    escaped text (app/web/users.py) or gzipped and base64-encoded (app/web/encoding.py)."""

    @property
    def room(self) -> int:
        """Room for the names, in what this meter counts."""
        ...

    @property
    def spent(self) -> int:
        """What the pieces taken so far take of the room: an estimate while the meter cannot tell
        exactly (it only sizes the next chunk). Positive once a name is taken."""
        ...

    def fit(self, names: list[str], *, separated: bool) -> tuple[str, int]:
        """(piece, count): the longest prefix of `names` that still fits, joined, now counted."""
        ...


class PooledEngine(Protocol):
    """An engine as the invocation log line reads it: its connection pool."""

    @property
    def pool(self) -> object: ...


class HasEngine(Protocol):
    """The app's Database (app/storage/database.py) as the log line reads it: None until an engine loads."""

    @property
    def engine(self) -> PooledEngine | None: ...
