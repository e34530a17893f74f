"""`handler.handler` with its pool primed during the init, for the SnapStart tests.

Functions that warm up before their first invocation (and SnapStart users, who want the warm-up
in the snapshot) leave a live pooled connection behind the init. The real handler opens none
until the first request, so a before-snapshot hook that closed nothing would go unnoticed; run
as `python -m awslambdaric tests.primed_handler.handler`, this init has one to close.
"""

from __future__ import annotations

from sqlalchemy import text

import handler as _real
from app.storage import DATABASE_KEY

_engine = _real.app.extensions[DATABASE_KEY].engine
with _engine.connect() as _connection:
    _connection.execute(text("SELECT 1"))  # checked back in: the pool keeps it open

handler = _real.handler
