"""A database password never reaches a log line, and masking never breaks one (issue 13's URLs)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from app.config import Settings

ROOT = Path(__file__).resolve().parent.parent
# A port nothing listens on: each cold start and request fails to connect, which is what gets logged.
CLOSED_PORT = 9


def _cold_start_and_serve(database_url: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    code = (
        "import json, handler\n"
        "event = json.load(open('events/http-api-v2.json'))\n"
        "print(json.dumps(handler.handler(event, None)))\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={"PATH": os.environ["PATH"], "DATABASE_URL": database_url, "SQLITE_COPY_PATH": str(tmp_path / "u.db")},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize(
    ("url", "secrets", "starts"),
    [
        pytest.param(
            f"postgresql+psycopg://postgres:p@ssw0rd@127.0.0.1:{CLOSED_PORT}/db",
            ["ssw0rd", "p@ssw0rd"],
            False,
            id="unencoded-at",
        ),
        pytest.param(
            f"postgresql+psycopg://postgres:p@ss:w0rd1@127.0.0.1:{CLOSED_PORT}/db",
            ["w0rd1", "ss:w0rd1"],
            False,
            id="colon",
        ),
        # An "@" then "/", "?" or "[" in the password: SQLAlchemy reads host "ss" and the rest of
        # the password as the database name or query, which the init line would print.
        *(
            pytest.param(
                f"postgresql+psycopg://postgres:p@ss{mark}w0rd@127.0.0.1:{CLOSED_PORT}/db",
                [f"ss{mark}w0rd", "w0rd@"],
                False,
                id=f"unencoded-at-then-{name}",
            )
            for mark, name in (("/", "slash"), ("?", "question-mark"), ("[", "bracket"))
        ),
        pytest.param(
            f"postgresql+psycopg://postgres@127.0.0.1:{CLOSED_PORT}/db?password=Qu3ryS3cret",
            ["Qu3ryS3cret"],
            True,
            id="password-query-parameter",
        ),
        pytest.param(
            f"postgresql+psycopg://postgres:Tr0ub4dor@127.0.0.1:{CLOSED_PORT}/db?sslpassword=K3yS3cret&sslmode=disable",
            ["Tr0ub4dor", "K3yS3cret"],
            True,
            id="sslpassword-query-parameter",
        ),
        pytest.param(f"postgresql+psycopg://postgres:0@127.0.0.1:{CLOSED_PORT}/db", [], True, id="one-character"),
        pytest.param(
            f"postgresql+psycopg://postgres:Tr0ub4dor@127.0.0.1:{CLOSED_PORT}/db", ["Tr0ub4dor"], True, id="plain"
        ),
    ],
)
def test_redaction_every_line_is_json_and_no_password_leaks(
    url: str, secrets: list[str], starts: bool, tmp_path: Path
) -> None:
    # GIVEN a container started with DATABASE_URL holding a password WHEN it starts and serves a request
    result = _cold_start_and_serve(url, tmp_path)

    # THEN every stdout line is JSON and neither stream holds the password or a part of it
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    for secret in secrets:
        assert secret not in result.stdout
        assert secret not in result.stderr
    if not starts:  # a URL SQLAlchemy misreads fails the cold start, unquoted
        assert result.returncode != 0
        assert "is not a valid SQLAlchemy database URL" in result.stderr
    else:  # served (503: nothing listens); a short password masks no other value, the lines intact
        assert result.returncode == 0, result.stderr
        response = lines[-1]
        assert response["statusCode"] == 503
        invocation = next(line for line in lines if line.get("message") == "invocation")
        assert (invocation["status"], invocation["path"], invocation["source"]) == (503, "/users", "apigw-http")


def test_redaction_settings_repr_hides_the_url() -> None:
    settings = Settings(database_url="postgresql+psycopg://postgres:Tr0ub4dor@db/x")

    assert "Tr0ub4dor" not in repr(settings)
