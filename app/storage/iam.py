"""IAM database authentication (DB_IAM_AUTH=true): a fresh token as each new connection's password.

RDS, Aurora and RDS Proxy take a token from `rds.generate_db_auth_token` (SigV4-presigned for
the host, port and user, valid 15 minutes for opening a connection); Aurora DSQL takes one from
`dsql.generate_db_connect_auth_token` (or the admin variant for the `admin` role). Tokens are
signed locally with the function's credentials: no network call. boto3 is imported only here,
and only when the setting is on (app/storage/aws.py).
"""

from __future__ import annotations

import re
import threading
from typing import Any

from app.logs import redact
from app.storage import aws

__all__ = ["DSQL_HOST", "TOKEN_LIFETIME_SECONDS", "auth_token", "require_tls"]

# How long a token may be used to open a connection; DB_POOL_RECYCLE must stay below it.
TOKEN_LIFETIME_SECONDS: int = 900
# Aurora DSQL cluster endpoints: <cluster id>.dsql.<region>.on.aws (region in group 1).
DSQL_HOST = re.compile(r"[a-z0-9]+\.dsql(?:-[a-z0-9]+)?\.([a-z]{2}(?:-[a-z]+)+-\d)\.on\.aws", re.IGNORECASE)
DSQL_ADMIN_USER: str = "admin"
# libpq sslmodes that already require TLS, at least as strictly as `require`.
_TLS_MODES: frozenset[str] = frozenset({"require", "verify-ca", "verify-full"})

# One client per service and region for the process: building one costs milliseconds.
_clients: dict[tuple[str, str | None], Any] = {}
_clients_lock = threading.Lock()


def _client(service: str, region: str | None) -> Any:
    with _clients_lock:
        found = _clients.get((service, region))
        if found is None:
            found = _clients[service, region] = aws.client(service, region_name=region)
        return found


def auth_token(host: str, port: int, user: str) -> str:
    """A new token for `user` at `host`:`port`, registered with the log redactor."""
    dsql = DSQL_HOST.fullmatch(host)
    if dsql is not None:
        client = _client("dsql", dsql.group(1))
        if user == DSQL_ADMIN_USER:
            token: str = client.generate_db_connect_admin_auth_token(Hostname=host, Region=dsql.group(1))
        else:
            token = client.generate_db_connect_auth_token(Hostname=host, Region=dsql.group(1))
    else:
        token = _client("rds", None).generate_db_auth_token(DBHostname=host, Port=port, DBUsername=user)
    redact(token, rotating=True)  # the code never logs it; this is the safety net
    return token


def require_tls(sslmode: str | None) -> str:
    """The sslmode to use with a token: the URL's when it requires TLS already, else `require`."""
    return sslmode if sslmode in _TLS_MODES else "require"
