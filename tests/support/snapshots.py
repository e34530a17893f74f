"""The S3 snapshot the storage tests serve: where it lives, the app factory's type, the clock that times it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from flask import Flask

from app.config import S3Location

__all__ = ["SNAPSHOT_BUCKET", "SNAPSHOT_LOCATION", "SNAPSHOT_OBJECT_KEY", "FakeClock", "MakeSnapshotApp"]

SNAPSHOT_BUCKET = "users-api-snapshots"
SNAPSHOT_OBJECT_KEY = "prod/users.db"
SNAPSHOT_LOCATION = S3Location(bucket=SNAPSHOT_BUCKET, key=SNAPSHOT_OBJECT_KEY)

# The `make_snapshot_app` fixture (tests/storage/conftest.py): keyword Settings changes in, app out.
MakeSnapshotApp = Callable[..., Flask]


@dataclass
class FakeClock:
    """A monotonic clock that moves only when told to."""

    now: float = 1_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
