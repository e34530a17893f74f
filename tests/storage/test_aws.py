"""boto3 stays off the default cold start; clients fail fast; errors keep AWS's code."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from app.storage import aws

ROOT = Path(__file__).resolve().parents[2]
AWS_MODULES = ("boto3", "botocore", "s3transfer")


def _run_python(code: str, tmp_path: Path, **env: str) -> str:
    result = subprocess.run(
        [sys.executable, "-c", code],
        env={"PATH": "/usr/bin:/bin", "SQLITE_COPY_PATH": str(tmp_path / "users.db"), **env},
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return result.stdout.splitlines()[-1]


def test_aws_default_cold_start_never_imports_boto3(tmp_path: Path) -> None:
    # GIVEN the default settings WHEN Lambda imports the handler THEN no AWS SDK module is loaded;
    # and the same probe sees them once a client is made, so it can tell.
    code = f"""
import json, sys
import handler
before = sorted(m for m in sys.modules if m.split(".")[0] in {AWS_MODULES!r})
from app.storage import aws
aws.client("s3", region_name="us-east-1")
after = [m for m in {AWS_MODULES[:2]!r} if m in sys.modules]
print(json.dumps([before, after]))
"""
    before, after = json.loads(_run_python(code, tmp_path, AWS_EC2_METADATA_DISABLED="true"))

    assert before == []
    assert after == ["boto3", "botocore"]


def test_aws_client_fails_fast_and_retries_in_standard_mode() -> None:
    client = aws.client("secretsmanager", region_name="eu-west-1")

    config = client.meta.config
    assert (config.connect_timeout, config.read_timeout) == (2.0, 3.0)
    assert config.retries == {"mode": "standard", "total_max_attempts": 3}
    assert client.meta.region_name == "eu-west-1"


def test_aws_client_defaults_to_the_environment_region() -> None:
    assert aws.client("s3").meta.region_name == "us-east-1"  # AWS_DEFAULT_REGION, set by the fixtures


@pytest.mark.parametrize(
    ("exc", "code", "message"),
    [
        pytest.param(
            ClientError({"Error": {"Code": "NoSuchKey", "Message": "The specified key does not exist."}}, "GetObject"),
            "NoSuchKey",
            "The specified key does not exist.",
            id="service-error",
        ),
        pytest.param(
            ClientError({"Error": {}, "ResponseMetadata": {"HTTPStatusCode": 304}}, "GetObject"),
            "304",
            "An error occurred (Unknown) when calling the GetObject operation: Unknown",
            id="bodyless-status",
        ),
        pytest.param(
            EndpointConnectionError(endpoint_url="https://s3.us-east-1.amazonaws.com/"),
            "EndpointConnectionError",
            'Could not connect to the endpoint URL: "https://s3.us-east-1.amazonaws.com/"',
            id="transport",
        ),
    ],
)
def test_aws_describe_error_keeps_the_code(exc: Exception, code: str, message: str) -> None:
    error = aws.describe_error(exc)

    assert error is not None
    assert (error.code, error.message, str(error)) == (code, message, f"{code}: {message}")


def test_aws_describe_error_ignores_other_exceptions() -> None:
    assert aws.describe_error(ValueError("x")) is None
