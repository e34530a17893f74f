"""`Accept` negotiation (app/web/negotiation.py): RFC 9110 §12.5.1, locally and through every event kind."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest
from flask.testing import FlaskClient

from app.adapter import LambdaHandler
from app.web.negotiation import choose_media_type
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import HTTP_EVENT_BUILDERS, response_headers

TEXT = "text/plain; charset=utf-8"
JSON = "application/json"
OFFERED = ("text/plain", "application/json")

# (Accept, the Content-Type answered); None: 406.
EXAMPLES = [
    # Parameters other than q never prevent a match (issue 18: each of these was a 406).
    pytest.param("text/plain; charset=utf-8", TEXT, id="text-with-charset"),
    pytest.param("application/json; charset=utf-8", JSON, id="json-with-charset"),
    pytest.param("application/json; version=1", JSON, id="json-with-version"),
    pytest.param("Application/JSON;Charset=UTF-8", JSON, id="case-insensitive"),
    pytest.param("text/plain;format=flowed;q=0.4, application/json;q=0.3", TEXT, id="parameters-and-q"),
    # q-values honoured, q=0 is "not acceptable", ties go to text.
    pytest.param("application/json;q=0", None, id="json-refused"),
    pytest.param("application/json;q=0, */*", TEXT, id="anything-but-json"),
    pytest.param("text/plain;q=0, */*", JSON, id="anything-but-text"),
    pytest.param("text/plain;q=0.5, application/json", JSON, id="json-preferred"),
    pytest.param("application/json, text/plain", TEXT, id="tie-goes-to-text"),
    pytest.param("text/*;q=0.5, application/json;q=0.5", TEXT, id="tie-across-specificity-goes-to-text"),
    pytest.param("*/*;q=0.1, application/json;q=0", TEXT, id="specific-range-overrides-wildcard"),
    pytest.param("text/*;q=0, text/plain;q=0.2, application/json;q=0.1", TEXT, id="most-specific-range-wins"),
    pytest.param("application/*", JSON, id="any-application"),
    pytest.param("text/html, application/xml", None, id="neither"),
    # Malformed members are ignored; an Accept with no valid member counts as absent (text).
    pytest.param("garbage", TEXT, id="garbage"),
    pytest.param("application/json;q=abc", TEXT, id="q-not-a-number"),
    pytest.param("application/json;q=2", TEXT, id="q-above-one"),
    pytest.param("text, */json", TEXT, id="not-media-ranges"),
    pytest.param("garbage, application/json", JSON, id="garbage-beside-json"),
    pytest.param("application/json;q=abc, text/plain;q=0", None, id="bad-q-beside-refusal"),
]


@pytest.mark.parametrize(("accept", "content_type"), EXAMPLES)
def test_choose_media_type(accept: str, content_type: str | None) -> None:
    expected = None if content_type is None else content_type.split(";")[0]

    assert choose_media_type(accept, OFFERED) == expected


@pytest.mark.parametrize(("accept", "content_type"), EXAMPLES)
def test_accept_locally(accept: str, content_type: str | None, client: FlaskClient) -> None:
    response = client.get("/users", headers={"Accept": accept})

    if content_type is None:
        assert response.status_code == 406
        assert response.get_json()["error"] == "not_acceptable"
        assert response.headers["Vary"] == "Accept, Accept-Encoding"  # a cache keys the 406 on Accept too
    else:
        assert response.status_code == 200
        assert response.content_type == content_type
        assert response.headers["Vary"] == "Accept, Accept-Encoding"
        assert response.get_data(as_text=True) == (
            "Alice,Bob,Carol,Dave,Eve"
            if content_type == TEXT
            else json.dumps({"users": ["Alice", "Bob", "Carol", "Dave", "Eve"], "next": None}, separators=(",", ":"))
        )


@pytest.mark.parametrize("make_event", HTTP_EVENT_BUILDERS)
@pytest.mark.parametrize(("accept", "content_type"), EXAMPLES)
def test_accept_through_every_event_kind(
    accept: str, content_type: str | None, make_event: Callable[..., dict[str, Any]], lambda_handler: LambdaHandler
) -> None:
    response = lambda_handler(make_event(headers={"Accept": accept}), FakeContext())

    headers = response_headers(response)
    if content_type is None:
        assert response["statusCode"] == 406
        assert headers["content-type"] == "application/json"
        assert json.loads(response["body"])["error"] == "not_acceptable"
        assert headers["vary"] == "Accept, Accept-Encoding"
    else:
        assert response["statusCode"] == 200
        assert headers["content-type"] == content_type
        assert headers["vary"] == "Accept, Accept-Encoding"
