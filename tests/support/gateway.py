"""A client of the deployed function: URLs in, Lambda events out, `next` links followed.

A Deployment turns the URL a client requests into the event its platform sends (REST APIs
take the stage off the path, HTTP APIs keep it, ALB passes query values undecoded), so a
walk follows `Link` headers exactly as a client would: resolved against the URL of the
response that carried them.
"""

from __future__ import annotations

import base64
import gzip
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qsl, urljoin, urlsplit

import pytest

from app.adapter import LambdaHandler
from app.types import ALB_RESPONSE_LIMIT, LAMBDA_RESPONSE_LIMIT
from tests.support.lambda_context import FakeContext
from tests.support.lambda_events import (
    Event,
    make_alb_event,
    make_function_url_event,
    make_v1_event,
    make_v2_event,
    response_headers,
)
from tests.support.names import parse_text_body

__all__ = [
    "ALB_HOST",
    "DEPLOYMENTS",
    "EXECUTE_API_HOST",
    "FUNCTION_URL_HOST",
    "Deployment",
    "Fetched",
    "walk",
]

EXECUTE_API_HOST = "a1b2c3d4e5.execute-api.us-east-1.amazonaws.com"
ALB_HOST = "users-1234567890.us-east-1.elb.amazonaws.com"
FUNCTION_URL_HOST = "abcdefghijklmnopqrstuvwxyz012345.lambda-url.us-east-1.on.aws"
_LINK_NEXT = re.compile(r'<([^>]*)>; rel="next"')


@dataclass(frozen=True)
class Deployment:
    """One way of reaching the function: the URL of /users and the events that URL becomes."""

    base_url: str
    make_event: Callable[..., Event]
    response_limit: int = LAMBDA_RESPONSE_LIMIT
    # REST APIs on execute-api hosts: the stage is in the URL, not in the event's path.
    stage_prefix: str = ""
    # ALB passes query strings as sent, still percent-encoded.
    raw_query: bool = False
    # API_GATEWAY_BASE_PATH this deployment's function is configured with.
    base_path: str | None = None

    def event(self, url: str, headers: dict[str, str] | None = None) -> Event:
        parts = urlsplit(url)
        base = urlsplit(self.base_url)
        assert (parts.scheme, parts.netloc) == (base.scheme, base.netloc), f"{url} left {self.base_url}"
        path = parts.path
        if self.stage_prefix:
            assert path.startswith(self.stage_prefix + "/"), f"{url} is outside the stage {self.stage_prefix}"
            path = path[len(self.stage_prefix) :]
        if self.raw_query:
            pairs = [(name, value) for name, _, value in (p.partition("=") for p in parts.query.split("&") if p)]
        else:
            pairs = parse_qsl(parts.query, keep_blank_values=True)
        query = dict(pairs)
        assert len(query) == len(pairs), "builders take one value per parameter"
        return self.make_event(path=path, query=query or None, headers=headers)


DEPLOYMENTS = [
    pytest.param(
        Deployment(
            f"https://{EXECUTE_API_HOST}/dev/users",
            lambda **kw: make_v1_event(host=EXECUTE_API_HOST, stage="dev", **kw),
            stage_prefix="/dev",
        ),
        id="apigw-v1-stage",
    ),
    pytest.param(
        Deployment(
            f"https://{EXECUTE_API_HOST}/dev/users",
            lambda **kw: make_v1_event(host=EXECUTE_API_HOST, stage="dev", multi_value=True, **kw),
            stage_prefix="/dev",
        ),
        id="apigw-v1-multi-value",
    ),
    pytest.param(
        Deployment(
            "https://api.example.com/v1/users",
            lambda **kw: make_v1_event(host="api.example.com", **kw),
            base_path="v1",
        ),
        id="apigw-v1-custom-domain",
    ),
    pytest.param(
        Deployment(f"https://{EXECUTE_API_HOST}/users", lambda **kw: make_v2_event(host=EXECUTE_API_HOST, **kw)),
        id="apigw-v2",
    ),
    pytest.param(
        Deployment(
            f"https://{EXECUTE_API_HOST}/prod/users",
            lambda **kw: make_v2_event(host=EXECUTE_API_HOST, stage="prod", **kw),
        ),
        id="apigw-v2-named-stage",
    ),
    pytest.param(
        Deployment(
            f"https://{ALB_HOST}/users",
            lambda headers=None, **kw: make_alb_event(headers={"host": ALB_HOST, **(headers or {})}, **kw),
            response_limit=ALB_RESPONSE_LIMIT,
            raw_query=True,
        ),
        id="alb",
    ),
    pytest.param(
        Deployment(
            f"https://{ALB_HOST}/users",
            lambda headers=None, **kw: make_alb_event(
                headers={"host": ALB_HOST, **(headers or {})}, multi_value=True, **kw
            ),
            response_limit=ALB_RESPONSE_LIMIT,
            raw_query=True,
        ),
        id="alb-multi-value",
    ),
    pytest.param(Deployment(f"https://{FUNCTION_URL_HOST}/users", make_function_url_event), id="function-url"),
]


@dataclass(frozen=True)
class Fetched:
    """One page as the client got it."""

    url: str
    response: dict[str, Any]

    @property
    def headers(self) -> dict[str, str]:
        return response_headers(self.response)

    @property
    def next_url(self) -> str | None:
        link = self.headers.get("link")
        if link is None:
            return None
        match = _LINK_NEXT.fullmatch(link)
        assert match, link
        return urljoin(self.url, str(match.group(1)))

    @property
    def wire_sizes(self) -> tuple[int, int]:
        """Bytes of the response JSON as the runtime may send it: ASCII-escaped, and UTF-8."""
        return len(json.dumps(self.response)), len(json.dumps(self.response, ensure_ascii=False).encode("utf-8"))

    def body(self) -> str:
        """The body as the client reads it: a gzip one (base64 in the proxy response) decoded."""
        body: str = self.response.get("body", "")
        if self.headers.get("content-encoding") == "gzip":
            assert self.response["isBase64Encoded"] is True
            return gzip.decompress(base64.b64decode(body, validate=True)).decode("utf-8")
        assert "content-encoding" not in self.headers
        assert self.response["isBase64Encoded"] is False
        return body

    def names(self) -> list[str]:
        body = self.body()
        if self.headers["content-type"] == "application/json":
            document = json.loads(body)
            assert set(document) == {"users", "next"}
            next_url = self.next_url
            assert document["next"] == (
                None if next_url is None else dict(parse_qsl(urlsplit(next_url).query))["after"]
            )
            names: list[str] = document["users"]
            return names
        assert self.headers["content-type"] == "text/plain; charset=utf-8"
        return parse_text_body(body)


def walk(
    handler: LambdaHandler,
    deployment: Deployment,
    *,
    query: str = "",
    headers: dict[str, str] | None = None,
    max_pages: int = 1_000,
) -> list[Fetched]:
    """GET /users and every `next` page after it; each response must be a 200."""
    pages: list[Fetched] = []
    url: str | None = deployment.base_url + query
    while url is not None:
        assert len(pages) < max_pages, "the walk does not end"
        response = handler(deployment.event(url, headers), FakeContext())
        assert response["statusCode"] == 200, response.get("body", "")[:300]
        page = Fetched(url, response)
        pages.append(page)
        url = page.next_url
    return pages
