"""boto3 clients, imported and created only when a feature that needs AWS is configured.

Importing boto3 and building a client is a large share of a cold start (`python -m
bench.aws_import_cost` measures it), so nothing imports this module's boto3 until `client` is called:
a plain cold start never pays for it. Callers call `aws.client(...)` through the module,
which also lets tests wrap the factory.
"""

from __future__ import annotations

from typing import Any

__all__ = ["AwsError", "client", "describe_error"]

# Fail fast rather than burn a Lambda invocation's billed time (or the 10 s init phase)
# waiting on an endpoint: connect within 2 s, no socket read may stall for more than 3 s
# (a snapshot download reads many times and may take longer overall; a warm refresh also
# stops at its request's deadline, which one stalled read overruns by at most this), and
# retry throttling and 5xx errors with the SDK's standard mode, 3 attempts in all.
CONNECT_TIMEOUT_SECONDS: float = 2.0
READ_TIMEOUT_SECONDS: float = 3.0
MAX_ATTEMPTS: int = 3


class AwsError(Exception):
    """Raised when an AWS call fails; `code` is the service's error code (e.g. NoSuchKey, AccessDenied).

    Also what an S3 snapshot download raises for a local failure: the codes of
    app/storage/s3_snapshot.py (InvalidSnapshot, LocalWriteFailed, DeadlineExceeded).
    """

    def __init__(self, code: str, message: str) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


def client(service_name: str, *, region_name: str | None = None) -> Any:
    """A boto3 client for `service_name` (credentials and default region from the environment).

    Typed `Any`: boto3 ships no type hints, and the callers use one or two operations each.
    """
    import boto3.session
    from botocore.config import Config

    config = Config(
        connect_timeout=CONNECT_TIMEOUT_SECONDS,
        read_timeout=READ_TIMEOUT_SECONDS,
        retries={"mode": "standard", "total_max_attempts": MAX_ATTEMPTS},
    )
    # A session of its own rather than boto3's shared default one: sessions are not
    # thread-safe, and the default one caches the first credentials it resolves for good.
    return boto3.session.Session().client(service_name, region_name=region_name, config=config)


def describe_error(exc: BaseException) -> AwsError | None:
    """The AwsError for a botocore exception (a service error or a transport failure), else None."""
    from botocore.exceptions import BotoCoreError, ClientError

    if isinstance(exc, ClientError):
        error = exc.response.get("Error", {})
        code = str(error.get("Code") or exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", "Unknown"))
        return AwsError(code, str(error.get("Message") or exc))
    if isinstance(exc, BotoCoreError):
        # No credentials, endpoint unreachable, read timeout, truncated body, ...
        return AwsError(type(exc).__name__, str(exc))
    return None
