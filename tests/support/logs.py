"""Reading the app's log: one JSON object per line of stdout."""

from __future__ import annotations

import json
from typing import Any

__all__ = ["log_lines"]


def log_lines(captured_out: str) -> list[dict[str, Any]]:
    """Parse captured stdout: every line must be a JSON object."""
    return [json.loads(line) for line in captured_out.splitlines() if line.strip()]
