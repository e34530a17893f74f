"""Running the Serverless Framework CLI (osls, from node_modules) in tests: where it is, its environment.

The CLI runs with dummy AWS credentials and the EC2 metadata probe disabled: nothing may reach AWS.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path

import pytest

from tests.support import ROOT

__all__ = ["CLI_TIMEOUT_SECONDS", "OSLS", "cli_env", "needs_cli"]

OSLS = ROOT / "node_modules" / ".bin" / "osls"
CLI_TIMEOUT_SECONDS = 180

needs_cli = pytest.mark.skipif(
    shutil.which("node") is None or not OSLS.exists(),
    reason="Serverless CLI not installed: needs node and npm (`make test` runs `npm ci` when npm is on PATH)",
)


def cli_env(tmp_path: Path) -> dict[str, str]:
    """Environment for the CLI: this venv's python first, dummy AWS credentials, no metadata probe."""
    venv_bin = str(Path(sys.executable).parent)
    env = {key: value for key, value in os.environ.items() if not key.startswith(("AWS_", "DB_", "SLS_"))}
    env.pop("DATABASE_URL", None)
    env.update(
        {
            "PATH": venv_bin + os.pathsep + env.get("PATH", ""),
            "VIRTUAL_ENV": str(Path(venv_bin).parent),
            "AWS_EC2_METADATA_DISABLED": "true",
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": "testing",
            "AWS_DEFAULT_REGION": "us-east-1",
            "SQLITE_COPY_PATH": str(tmp_path / "lambda-tmp" / "users.db"),
        }
    )
    if "AWS_CA_BUNDLE" in os.environ:
        env["AWS_CA_BUNDLE"] = os.environ["AWS_CA_BUNDLE"]
    return env
