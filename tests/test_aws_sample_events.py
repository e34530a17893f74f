"""AWS's own sample events (tests/payloads/aws/, see its README) served by `handler.handler`."""

from __future__ import annotations

import re

import pytest

from app.adapter import LambdaHandler
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import response_headers
from tests.support.logs import log_lines
from tests.support.payloads import AWS_PAYLOADS_DIR, aws_sample_names, load_event
from tests.support.tables import SEED_NAMES

# Sample name -> (the event source the invocation line reports, the headers field the answer uses).
# ALB and REST events with `multiValueHeaders` get them back; the rest get `headers`.
AWS_SAMPLES: dict[str, tuple[str, str]] = {
    "apigateway-aws-proxy": ("apigw-rest", "multiValueHeaders"),
    "apigateway-http-api-proxy": ("apigw-http", "headers"),
    "alb-request": ("alb", "headers"),
    "function-url-docs": ("function-url", "headers"),
}


def test_aws_samples_all_listed_with_their_command() -> None:
    readme = (AWS_PAYLOADS_DIR / "README.md").read_text(encoding="utf-8")
    documented = sorted(re.findall(r"^\| `([\w-]+)\.json` \|", readme, flags=re.MULTILINE))

    assert aws_sample_names() == sorted(AWS_SAMPLES)
    assert documented == aws_sample_names()


@pytest.mark.parametrize("name", aws_sample_names())
def test_aws_sample_served_with_seed_names(
    name: str, lambda_handler: LambdaHandler, context: FakeContext, capsys: pytest.CaptureFixture[str]
) -> None:
    source, headers_field = AWS_SAMPLES[name]
    capsys.readouterr()

    response = lambda_handler(load_event(f"aws/{name}"), context)

    assert response["statusCode"] == 200, response.get("body")
    assert response["body"] == SEED_NAMES
    assert response["isBase64Encoded"] is False
    assert headers_field in response
    assert response_headers(response)["content-type"] == "text/plain; charset=utf-8"
    invocation = [line for line in log_lines(capsys.readouterr().out) if line["message"] == "invocation"]
    assert [(line["source"], line["status"]) for line in invocation] == [(source, 200)]
