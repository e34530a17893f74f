"""docs/openapi.yaml: served at /openapi.json, valid, in step with docs/http.md, and true of the app (Schemathesis)."""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
import yaml
from flask import Flask
from flask.testing import FlaskClient
from hypothesis import strategies as st
from schemathesis.config import SchemathesisConfig

from app import create_app
from app.config import Settings
from app.storage import DATABASE_KEY
from app.web.cursor import encode_cursor
from app.web.openapi import OPENAPI_JSON_PATH

ROOT = Path(__file__).resolve().parent.parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_openapi  # noqa: E402

DOCUMENT: dict[str, Any] = yaml.safe_load((ROOT / "docs" / "openapi.yaml").read_text(encoding="utf-8"))
# Fixed seed and a bounded number of examples per operation and phase: the same cases every
# run, in well under 30 s.
# A schema-valid request may still be refused with 406, but only as docs/openapi.yaml's
# Accept says (app/web/negotiation.py): media ranges that exclude both formats (`image/png`,
# `text/plain;q=0, application/json;q=0`) are valid HTTP. Parameters, unparseable members and
# odd q-values never cause one (the examples below). Every other refusal of valid data fails.
SCHEMATHESIS_CONFIG: dict[str, Any] = {
    "seed": 19,
    "generation": {"max-examples": 60, "deterministic": True},
    "checks": {"positive_data_acceptance": {"expected-statuses": ["2XX", "304", "406"]}},
}
# Names of every kind: commas, quotes, line breaks, empty, non-ASCII, and enough of them that
# small limits give several pages.
CONTRACT_NAMES: list[str] = ["Alice", "", "O'Brien, Pat", 'Say "hi"', "li\nne", "Zoë 🚀", *[f"u{i}" for i in range(40)]]


def test_openapi_json_is_the_yaml(tmp_path: Path) -> None:
    assert build_openapi.main(["--check"]) == 0
    assert json.loads(OPENAPI_JSON_PATH.read_text(encoding="utf-8")) == DOCUMENT


def test_openapi_is_served_as_json(client: FlaskClient) -> None:
    response = client.get("/openapi.json")

    assert response.status_code == 200
    assert response.content_type == "application/json"
    assert response.get_json() == DOCUMENT


def test_openapi_document_is_valid_openapi_3_1() -> None:
    # Schemathesis validates the document against the OpenAPI 3.1 meta-schema on load.
    schema = schemathesis.openapi.from_dict(DOCUMENT)
    schema.validate()
    operations = set()
    for result in schema.get_all_operations():
        operation = result.ok()  # type: ignore[union-attr]  # an Err would have raised in validate()
        operations.add((operation.method.upper(), operation.path))

    assert operations == {("GET", "/users"), ("HEAD", "/users"), ("OPTIONS", "/users"), ("GET", "/openapi.json")}


def test_openapi_invalid_document_is_refused() -> None:
    broken = {**DOCUMENT, "paths": {"/users": {"get": {"responses": "none"}}}}

    with pytest.raises(Exception, match="responses"):
        schemathesis.openapi.from_dict(broken).validate()


def _documented_error_codes() -> set[tuple[int, str]]:
    # The error table people read (docs/http.md, "Errors").
    text = (ROOT / "docs" / "http.md").read_text(encoding="utf-8")
    rows = re.findall(r"^\| (\d{3}) \| `([a-z_]+)` \|", text, flags=re.MULTILINE)
    return {(int(status), code) for status, code in rows}


def _document_error_codes() -> set[tuple[int, str]]:
    codes = set()
    for name, response in DOCUMENT["components"]["responses"].items():
        match = re.fullmatch(r"Error(\d{3})", name)
        if match is None:
            continue
        schema = response["content"]["application/json"]["schema"]
        for code in schema["allOf"][1]["properties"]["error"]["enum"]:
            codes.add((int(match[1]), code))
    return codes


def test_openapi_error_codes_match_the_http_doc_table() -> None:
    documented = _documented_error_codes()

    assert len(documented) >= 12  # the table was found
    assert _document_error_codes() == documented


def test_openapi_every_documented_status_of_users_is_defined() -> None:
    responses = DOCUMENT["components"]["responses"]
    for method in ("get", "head"):
        for status, response in DOCUMENT["paths"]["/users"][method]["responses"].items():
            if "$ref" in response:
                assert response["$ref"].rsplit("/", 1)[1] in responses, (method, status)


# --- Schemathesis against the app, in process (WSGI) -------------------------------------


@pytest.fixture(scope="module")
def contract_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Flask]:
    import sqlite3

    directory = tmp_path_factory.mktemp("contract")
    path = directory / "users.db"
    with sqlite3.connect(path) as connection:
        connection.execute("CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT NOT NULL)")
        connection.executemany("INSERT INTO users (name) VALUES (?)", [(name,) for name in CONTRACT_NAMES])
    connection.close()
    # The bundle path: ETags from the file's identity; CORS on, so its headers are checked too.
    settings = Settings(
        bundled_db_path=path,
        sqlite_copy_path=directory / "copy" / "users.db",
        cors_allow_origins=frozenset({"https://app.example.com"}),
    )
    application = create_app(settings)
    yield application
    application.extensions[DATABASE_KEY].dispose()


# A schema-valid `after` is a cursor the API could have made (its checksum holds): any key.
schemathesis.openapi.format("users-cursor", st.integers(-(2**63), 2**63 - 1).map(encode_cursor))

# Loaded from the document, sent to the app in process: `call_and_validate(app=...)` picks
# Schemathesis's WSGI transport. (Not `schemathesis.pytest.from_fixture`: its lazy loader
# sets `Item._nodeid`, which pytest 9 no longer has.)
schema = schemathesis.openapi.from_dict(DOCUMENT, config=SchemathesisConfig.from_dict(SCHEMATHESIS_CONFIG))


@schema.parametrize()
def test_openapi_app_conforms(case: Any, contract_app: Flask) -> None:
    # Every default check: no 5xx, documented status codes, content types, headers and
    # schemas, and the negative cases (invalid input must get a 4xx).
    case.call_and_validate(app=contract_app)


def test_openapi_examples_of_every_status_conform(contract_app: Flask) -> None:
    """Statuses random inputs rarely reach (a cursor page, 304, 406) are checked directly."""
    operation = schema["/users"]["GET"]
    client = contract_app.test_client()
    # The transport sends its own Accept-Encoding (the ETag differs by coding): say which.
    first = client.get("/users?limit=2&format=json", headers={"Accept-Encoding": "identity"})
    cursor = first.get_json()["next"]
    cases = [
        operation.Case(query={"limit": 2}),
        operation.Case(query={"limit": 2, "after": cursor, "format": "json"}),
        operation.Case(
            headers={"If-None-Match": first.headers["ETag"], "Accept-Encoding": "identity"},
            query={"limit": 2, "format": "json"},
        ),
        operation.Case(headers={"Accept": "image/png"}),
        operation.Case(query={"after": "not-a-cursor"}),
        # Issue 18: parameters never prevent a match, malformed members are ignored.
        operation.Case(headers={"Accept": "text/plain; charset=utf-8"}),
        operation.Case(headers={"Accept": "application/json; version=1"}),
        operation.Case(headers={"Accept": "garbage"}),
        operation.Case(headers={"Accept": "application/json;q=abc"}),
        operation.Case(headers={"Accept": "application/json;q=0"}),
    ]
    statuses = []
    for case in cases:
        response = case.call_and_validate(app=contract_app)
        statuses.append(response.status_code)

    assert statuses == [200, 200, 304, 406, 400, 200, 200, 200, 200, 406]
