"""Conditional GET (RFC 9110 §8.8.3, §13.1.2): a strong ETag on every 200, 304 for a matching If-None-Match.

Two kinds of tag. When the database cannot change under the app (the bundled file, an S3
snapshot: `Database.content_id()`), the tag is a hash of that identity and of everything else
the response depends on (the query, the negotiated format, the response size limit, the URL
prefix `Link` is built from), known before reading: a 304 then reads nothing. Otherwise
(PostgreSQL, a DATABASE_URL file) it is a hash of the response itself, computed after reading.

If-None-Match uses the weak comparison (§13.1.2): `W/"x"` matches `"x"`, and `*` matches any
current representation. It is evaluated only once the request is known to succeed (a 400 or
406 stays one), and for GET and HEAD alone, as the RFC asks.
"""

from __future__ import annotations

import base64
import hashlib

from flask import Response, request
from werkzeug.http import parse_etags

__all__ = ["REPRESENTATION_VERSION", "body_etag", "is_not_modified", "not_modified_response", "query_etag"]

# Part of every identity-based tag: bump it when the same data would be written differently
# (format, Link), so that clients holding an old tag get the new body.
REPRESENTATION_VERSION: str = "1"
_DIGEST_BYTES: int = 16


def _tag(digest: bytes) -> str:
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def query_etag(content_id: str, *parts: object) -> str:
    """The (unquoted) tag of a response that depends only on `content_id` and `parts`."""
    key = "\x1f".join([REPRESENTATION_VERSION, content_id, *map(str, parts)])
    return _tag(hashlib.blake2b(key.encode("utf-8", "surrogatepass"), digest_size=_DIGEST_BYTES).digest())


def body_etag(body: str | bytes, *parts: object) -> str:
    """The (unquoted) tag of a response read from a mutable database: its body (text, or the
    bytes of an encoded one) and the headers `parts` (Content-Encoding among them)."""
    digest = hashlib.blake2b(digest_size=_DIGEST_BYTES)
    digest.update("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"))
    digest.update(b"\x1e")
    digest.update(body if isinstance(body, bytes) else body.encode("utf-8", "surrogatepass"))
    return _tag(digest.digest())


def is_not_modified(etag: str) -> bool:
    """Whether this GET/HEAD's If-None-Match matches `etag` (weak comparison; lists and `*`)."""
    header = request.environ.get("HTTP_IF_NONE_MATCH")
    if not header or request.method not in ("GET", "HEAD"):
        return False
    return parse_etags(header).contains_weak(etag)


def not_modified_response(etag: str, vary: str) -> Response:
    """304 with no body: the ETag and Vary a 200 would carry (RFC 9110 §15.4.5)."""
    response = Response(status=304)
    response.set_etag(etag)
    response.headers["Vary"] = vary
    return response
