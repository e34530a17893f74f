"""Types and Lambda platform facts shared across the package."""

from __future__ import annotations

from typing import Any, Protocol

__all__ = ["ALB_RESPONSE_LIMIT", "LAMBDA_RESPONSE_LIMIT", "RESPONSE_LIMIT_KEY", "LambdaContext", "LambdaResponse"]

# At the Lambda boundary responses are plain JSON objects.
LambdaResponse = dict[str, Any]

# The largest response JSON the invoker accepts: Lambda's synchronous limit (API Gateway,
# function URLs in BUFFERED mode) and an ALB target's. "6 MB" and "1 MB" read as decimal
# megabytes, the smaller reading: nothing in AWS's documentation promises 6 MiB.
LAMBDA_RESPONSE_LIMIT: int = 6_000_000
ALB_RESPONSE_LIMIT: int = 1_000_000
# WSGI environ key under which the adapter passes the request's response limit to the app.
RESPONSE_LIMIT_KEY: str = "users_api.response_limit"


class LambdaContext(Protocol):
    """The part of the Lambda context object this service reads."""

    @property
    def aws_request_id(self) -> str: ...
