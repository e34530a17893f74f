"""Which response limit applies: classified once by the adapter, read by the page budget."""

from __future__ import annotations

from typing import Any

import pytest

from app.adapter import classify_event
from app.types import ALB_RESPONSE_LIMIT, LAMBDA_RESPONSE_LIMIT, RESPONSE_LIMIT_KEY
from app.web.users import RESPONSE_RESERVE, body_budget
from tests.support.lambda_events import make_alb_event, make_function_url_event, make_v1_event, make_v2_event


@pytest.mark.parametrize(
    ("event", "limit"),
    [
        pytest.param(make_alb_event(), ALB_RESPONSE_LIMIT, id="alb"),
        pytest.param(make_alb_event(multi_value=True), ALB_RESPONSE_LIMIT, id="alb-multi-value"),
        pytest.param(make_v1_event(), LAMBDA_RESPONSE_LIMIT, id="apigw-v1"),
        pytest.param(make_v2_event(), LAMBDA_RESPONSE_LIMIT, id="apigw-v2"),
        pytest.param(make_function_url_event(), LAMBDA_RESPONSE_LIMIT, id="function-url"),
    ],
)
def test_response_limit_by_event_source(event: Any, limit: int) -> None:
    source, _ = classify_event(event)

    assert source.response_limit == limit
    assert body_budget({RESPONSE_LIMIT_KEY: source.response_limit}) == limit - RESPONSE_RESERVE


def test_response_limit_without_adapter_is_lambdas() -> None:
    # GIVEN a request the adapter did not see (the local server) THEN Lambda's limit applies
    assert body_budget({}) == LAMBDA_RESPONSE_LIMIT - RESPONSE_RESERVE
