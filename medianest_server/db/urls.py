"""``[database] url`` → a :class:`Database`: ``sqlite:///PATH`` or ``postgresql://…``."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

from .base import Database, UnknownDatabaseURL

_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&]*")


def mask_url(url: str) -> str:
    """The URL with any password (``user:PASSWORD@`` or ``?password=``) replaced by ``***``."""
    scheme, separator, rest = url.partition("://")
    if separator and "@" in rest:
        userinfo, _, host = rest.rpartition("@")
        user, colon, _ = userinfo.partition(":")
        if colon:
            rest = f"{user}:***@{host}"
    return _QUERY_PASSWORD.sub(r"\1***", scheme + separator + rest)


def _secrets(url: str) -> list[str]:
    """Every form in which the URL's password could show up in a driver message."""
    found: list[str] = []
    _, separator, rest = url.partition("://")
    if separator and "@" in rest:
        userinfo = rest.rpartition("@")[0]
        if ":" in userinfo:
            found.append(userinfo.partition(":")[2])
    found += [match.split("=", 1)[1] for match in re.findall(r"(?i)password=[^&]*", url)]
    found += [unquote(secret) for secret in found]
    return sorted({secret for secret in found if secret}, key=len, reverse=True)


def sqlite_path(url: str, base_dir: Path) -> Path | str:
    """``sqlite:///rel.db`` → base_dir/rel.db, ``sqlite:////abs.db`` → /abs.db, or ':memory:'."""
    rest = url.split("://", 1)[1]
    if not rest.startswith("/") or "?" in rest or "#" in rest:
        raise UnknownDatabaseURL(
            f"malformed SQLite URL {mask_url(url)!r}; expected sqlite:///relative/path.db "
            "(relative to the data directory) or sqlite:////absolute/path.db"
        )
    path = unquote(rest[1:])
    if path == ":memory:":
        return path
    if not path or path.endswith("/"):
        raise UnknownDatabaseURL(f"SQLite URL {mask_url(url)!r} does not name a file")
    return base_dir / path


def open_database(
    url: str, *, base_dir: Path, pool_size: int = 5, busy_timeout_ms: int = 5000
) -> Database:
    """Build the Database for ``url``; call ``await db.connect()`` before using it.

    ``sqlite:///relative/path.db`` is relative to ``base_dir``, ``sqlite:////abs/path.db`` is
    absolute, ``sqlite:///:memory:`` is a private in-memory database (tests only). The SQLite
    file's directory is created on connect. ``postgresql://user:pass@host:port/dbname`` (or
    ``postgres://``) uses a pool of up to ``pool_size`` connections. Anything else raises
    :class:`UnknownDatabaseURL`.
    """
    display = mask_url(url)
    try:
        scheme = urlsplit(url).scheme.lower() if "://" in url else ""
    except ValueError:
        scheme = ""
    if scheme == "sqlite":
        from .sqlite import SQLiteDatabase

        return SQLiteDatabase(
            sqlite_path(url, base_dir),
            url_for_display=display,
            pool_size=pool_size,
            busy_timeout_ms=busy_timeout_ms,
        )
    if scheme in ("postgresql", "postgres"):
        from .postgres import PostgresDatabase

        return PostgresDatabase(
            url, url_for_display=display, secrets=_secrets(url), pool_size=pool_size
        )
    shown = url.partition("://")[0] if "://" in url else ""
    raise UnknownDatabaseURL(
        f"unknown database URL scheme {shown!r} in {display!r}; "
        "expected sqlite:///PATH or postgresql://…"
    )
