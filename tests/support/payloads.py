"""Captured Lambda payloads, loaded as events: the sample events and the JSON fixtures.

Two folders of JSON, one loader. `events/` at the repository root holds the HTTP sample
events `make invoke` and `serverless invoke local` use; `tests/payloads/` holds the fixtures
only tests use: non-HTTP events, serverless-offline's shapes, and AWS's own samples
(`tests/payloads/aws/`, see its README). Events built in code are in lambda_events.py.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path

from tests.support import ROOT
from tests.support.lambda_events import Event

__all__ = ["AWS_PAYLOADS_DIR", "PAYLOADS_DIR", "SAMPLE_EVENTS_DIR", "aws_sample_names", "load_event"]

SAMPLE_EVENTS_DIR = ROOT / "events"  # HTTP samples, shared with `serverless invoke local`
PAYLOADS_DIR = ROOT / "tests" / "payloads"  # fixtures only tests use
AWS_PAYLOADS_DIR = PAYLOADS_DIR / "aws"  # AWS's own samples, as generated (see its README)


@cache
def _read(path: Path) -> Event:
    result: Event = json.loads(path.read_text(encoding="utf-8"))
    return result


def load_event(name: str) -> Event:
    """A deep copy of a captured event: `events/<name>.json` or `tests/payloads/<name>.json`."""
    path = SAMPLE_EVENTS_DIR / f"{name}.json"
    if not path.exists():
        path = PAYLOADS_DIR / f"{name}.json"
    return copy.deepcopy(_read(path))


def aws_sample_names() -> list[str]:
    """Every fixture in tests/payloads/aws/, so a new one cannot be left out of the tests."""
    return sorted(path.stem for path in AWS_PAYLOADS_DIR.glob("*.json"))
