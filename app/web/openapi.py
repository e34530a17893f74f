"""GET /openapi.json: the API's OpenAPI document.

docs/openapi.yaml is the source; `make openapi` writes its JSON form next to this module
(tests check the two agree), so serving it needs no YAML parser at run time. The file is
read once, when the app is built.
"""

from __future__ import annotations

from pathlib import Path

from flask import Flask, Response

__all__ = ["OPENAPI_JSON_PATH", "register_openapi"]

OPENAPI_JSON_PATH: Path = Path(__file__).resolve().parent / "openapi.json"
_MIMETYPE: str = "application/json"


def register_openapi(app: Flask) -> None:
    """Serve the document at GET /openapi.json."""
    document = OPENAPI_JSON_PATH.read_bytes()

    def openapi() -> Response:
        return Response(document, mimetype=_MIMETYPE)

    app.add_url_rule("/openapi.json", "openapi", openapi, methods=["GET"])
