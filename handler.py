"""AWS Lambda entry point (serverless.yml: `handler: handler.handler`).

Glue only: the app, its engine and pool are built once per container, at import, and
reused by every warm invocation. HTTP events go through Flask via serverless-wsgi.
"""

from __future__ import annotations

import gc

# The init allocates what lives as long as the container, so the cyclic collector has nothing
# to free in it: it stays off until the init is done (it cost ~25 ms of a ~240 ms cold start).
gc.disable()

from typing import Any

import serverless_wsgi

from app import create_app
from app.db import current_engine
from app.invocation import InvocationRecorder
from app.types import LambdaContext, LambdaResponse

app = create_app()
invocations = InvocationRecorder(app)


def __getattr__(name: str) -> Any:
    # `handler.engine` is the app's current engine, looked up on access: a refreshed S3
    # snapshot replaces it (app/snapshot_database.py), so a module global would go stale.
    if name == "engine":
        return current_engine(app)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# Freeze the init's objects out of every later collection, which would walk them all again
# each time (at 100k rows, close to half a warm invocation); see bench/RESULTS.md.
gc.freeze()
gc.enable()


def handler(event: Any, context: LambdaContext) -> LambdaResponse:
    """Serve one invocation; non-HTTP events are answered without reaching the app."""
    with invocations.record(event, context) as invocation:
        if invocation.response is None:
            invocation.response = serverless_wsgi.handle_request(app, invocation.event, context)
    assert invocation.response is not None
    return invocation.response


if __name__ == "__main__":
    # Local development only: Lambda imports this module and never runs this block.
    app.run(host="127.0.0.1", port=5000, debug=True)
