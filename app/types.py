"""Types shared across the package: the Lambda context and the shapes we return."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["LambdaContext", "LambdaEvent", "LambdaResponse"]

# At the Lambda boundary events and responses are plain JSON objects.
LambdaEvent = dict[str, Any]
LambdaResponse = dict[str, Any]


class LambdaContext(Protocol):
    """The part of the Lambda context object this service reads."""

    @property
    def aws_request_id(self) -> str: ...
