"""Which response limit applies: ALB events by `requestContext.elb`, everything else Lambda's."""

from __future__ import annotations

from typing import Any

import pytest

from app.response_limits import (
    ALB_RESPONSE_LIMIT,
    LAMBDA_RESPONSE_LIMIT,
    RESPONSE_RESERVE,
    body_budget,
    response_limit,
)
from tests.events import make_alb_event, make_function_url_event, make_v1_event, make_v2_event


@pytest.mark.parametrize(
    ("event", "limit"),
    [
        pytest.param(make_alb_event(), ALB_RESPONSE_LIMIT, id="alb"),
        pytest.param(make_alb_event(multi_value=True), ALB_RESPONSE_LIMIT, id="alb-multi-value"),
        pytest.param(make_v1_event(), LAMBDA_RESPONSE_LIMIT, id="apigw-v1"),
        pytest.param(make_v2_event(), LAMBDA_RESPONSE_LIMIT, id="apigw-v2"),
        pytest.param(make_function_url_event(), LAMBDA_RESPONSE_LIMIT, id="function-url"),
        pytest.param(None, LAMBDA_RESPONSE_LIMIT, id="no-event-local-server"),
        pytest.param({"requestContext": None}, LAMBDA_RESPONSE_LIMIT, id="null-request-context"),
    ],
)
def test_response_limit_by_event_source(event: Any, limit: int) -> None:
    environ = {} if event is None else {"serverless.event": event}

    assert response_limit(environ) == limit
    assert body_budget(environ) == limit - RESPONSE_RESERVE
