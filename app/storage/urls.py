"""Database URLs as this app opens and shows them: SQLite files, and passwords kept out of logs."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import quote, quote_plus, unquote

from sqlalchemy.engine import URL

__all__ = ["password_forms", "safe_url", "sqlite_file_url", "sqlite_read_only_url"]


def sqlite_read_only_url(path: Path) -> URL:
    """URL of a SQLite file opened read-only: the /tmp copy is a snapshot, not a store."""
    return URL.create("sqlite", database=f"file:{quote(str(path))}", query={"mode": "ro", "uri": "true"})


def sqlite_file_url(url: URL) -> tuple[URL, Path | None]:
    """A SQLite URL as opened: a file is opened as a URI with mode=rw (or the URL's mode=ro), so
    a missing file is an error instead of a new empty database. Also the file's absolute path
    (None: in memory). A relative path is taken from the working directory, once."""
    database = url.database or ""
    query = dict(url.query)
    if query.get("uri") == "true" and database.startswith("file:"):
        path_part = database.removeprefix("file:").split("?", 1)[0]
        if query.get("mode") == "memory" or not path_part:
            return url, None
        if query.get("mode") != "ro":
            query["mode"] = "rw"
        return url.set(query=query), Path(unquote(path_part)).absolute()
    if database in ("", ":memory:"):
        return url, None
    path = Path(database).absolute()
    return url.set(database=f"file:{quote(str(path))}", query={**query, "mode": "rw", "uri": "true"}), path


def _is_secret_parameter(name: str) -> bool:
    # libpq takes `password` and `sslpassword` as query parameters too (…/db?password=…).
    return "password" in name.lower()


def safe_url(url: URL) -> str:
    """The URL as text with any password masked, in the user info or the query, for logs."""
    secret_keys = [key for key in url.query if _is_secret_parameter(key)]
    if secret_keys:
        url = url.update_query_dict(dict.fromkeys(secret_keys, "***"))
    return url.render_as_string(hide_password=True)


def password_forms(url: URL) -> list[str]:
    """Every password in `url` as it may appear in text: raw, as SQLAlchemy renders it, percent-encoded."""
    passwords = [str(url.password)] if url.password else []
    for key, value in url.query.items():
        if _is_secret_parameter(key):
            passwords.extend(v for v in ((value,) if isinstance(value, str) else value) if v)
    forms: list[str] = []
    for password in passwords:
        rendered = URL.create("x", username="u", password=password, host="h").render_as_string(hide_password=False)
        forms += [
            password,
            rendered.removeprefix("x://u:").removesuffix("@h"),
            quote(password, safe=""),
            quote_plus(password),
        ]
    return forms
