"""A stand-in for the Lambda context object the runtime passes the handler."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["FakeContext"]


@dataclass
class FakeContext:
    """The Lambda context attributes a handler may read."""

    aws_request_id: str = "11111111-2222-3333-4444-555555555555"
    function_name: str = "users-api-dev-api"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:123456789012:function:users-api-dev-api"
    remaining_ms: int = 30_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
