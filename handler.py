"""AWS Lambda entry point (serverless.yml: `handler: handler.handler`).

Glue only: the app, its engine and pool are built once per container, at import, and
reused by every warm invocation (app/adapter.py turns events into requests).
"""

from __future__ import annotations

import gc

# The init allocates what lives as long as the container, so the cyclic collector has nothing
# to free in it: it stays off until the init is done, which saves the cold start its
# collections (bench/RESULTS.md, "Cold start": the GC ms column).
gc.disable()

from app import create_app
from app.adapter import make_handler
from app.config import StartupError, running_on_lambda
from app.logs import write_init_error

try:
    app = create_app()
except StartupError as exc:
    # A setting or what it points at is wrong; the message names it. On Lambda: one JSON log
    # line, then the init error. Locally (`make run`, `invoke local`, which imports this
    # module): that one line alone, without a traceback around it, and exit status 1.
    if not running_on_lambda():
        raise SystemExit(f"users-api: {exc}") from None
    write_init_error(exc)
    raise
handler = make_handler(app)

# Without the freeze, the first collection after gc.enable() walks every object the init made
# at once, undoing the saving. Warm invocations gain nothing either way.
gc.freeze()
gc.enable()

if __name__ == "__main__":
    # Local development only (make run PORT=...): Lambda imports this module, never runs it.
    from app.local import serve

    serve(app)
