"""How large a response may be, by who invoked us.

Lambda rejects a synchronous response whose JSON exceeds 6 MB (API Gateway, function URLs
in BUFFERED mode) and an ALB target's response JSON may not exceed 1 MB; either way the
client gets a 502. The limit covers the whole proxy response as serialised, so the body
budget is counted in escaped bytes (app.name_formats.escaped_size) and leaves a reserve for
the status, the headers and the JSON around them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

__all__ = ["ALB_RESPONSE_LIMIT", "LAMBDA_RESPONSE_LIMIT", "RESPONSE_RESERVE", "body_budget", "response_limit"]

# "6 MB" and "1 MB" read as decimal megabytes, the smaller reading: 6 MiB would be 291,456
# bytes more, and nothing in AWS's documentation promises it.
LAMBDA_RESPONSE_LIMIT: int = 6_000_000
ALB_RESPONSE_LIMIT: int = 1_000_000
# Status, headers and the proxy dict's own JSON take well under 1 KB; the largest header is
# `Link`, whose path holds at most a stage name (128 characters) or API_GATEWAY_BASE_PATH.
RESPONSE_RESERVE: int = 16_384


def response_limit(environ: Mapping[str, Any]) -> int:
    """The size limit of the response JSON for the event serverless-wsgi put in `environ`."""
    event = environ.get("serverless.event")
    if isinstance(event, dict):
        request_context = event.get("requestContext")
        if isinstance(request_context, dict) and "elb" in request_context:
            return ALB_RESPONSE_LIMIT
    return LAMBDA_RESPONSE_LIMIT


def body_budget(environ: Mapping[str, Any]) -> int:
    """Escaped bytes a response body may take (framing included) for this request."""
    return response_limit(environ) - RESPONSE_RESERVE
