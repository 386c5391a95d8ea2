"""The settings of `[plugins.plex]`."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

DEFAULT_PLEX_TV_URL = "https://plex.tv"


_http_url = validate.URL(schemes={"http", "https"}, require_tld=False)


def _empty_or_http_url(value: str) -> None:
    if value:
        _http_url(value)


def _mapping(value: str) -> None:
    local, sep, remote = value.partition("=")
    if not sep or not local.strip().startswith("/") or not remote.strip().startswith("/"):
        raise ValidationError(
            f"{value!r} is not local_prefix=plex_prefix (two absolute paths, e.g. "
            "/srv/media/youtube=/data/youtube)"
        )


class PlexSettings(Schema):
    """Without `url` and `token` the plugin loads but stays inert (nothing to sign in with, a
    "not configured" health check), so installing it never breaks a running MediaNest."""

    url = fields.String(
        load_default="",
        validate=_empty_or_http_url,
        metadata={
            "doc": "Address of the Plex Media Server, e.g. http://192.168.1.10:32400 "
            "(required for the plugin to do anything)"
        },
    )
    token = fields.String(
        load_default="",
        metadata={
            "doc": "The server owner's X-Plex-Token (also accepted as token_file; required)",
            "secret": True,
        },
    )
    plex_tv_url = fields.Url(
        load_default=DEFAULT_PLEX_TV_URL,
        schemes={"http", "https"},
        require_tld=False,
        metadata={"doc": "Base address of plex.tv (change only for tests)"},
    )
    product = fields.String(
        load_default="MediaNest",
        validate=validate.Length(min=1, max=100),
        metadata={"doc": "Product name shown in the user's Plex devices"},
    )
    client_identifier = fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata={
            "doc": "X-Plex-Client-Identifier; empty: generated once and kept in the plugin's "
            "data folder"
        },
    )
    library_cache_seconds = fields.Float(
        load_default=60.0,
        validate=validate.Range(min=0, max=86400),
        metadata={"doc": "How long library listings, items and searches are cached per user"},
    )
    recent_cache_seconds = fields.Float(
        load_default=30.0,
        validate=validate.Range(min=0, max=86400),
        metadata={"doc": "How long recently added lists are cached per user"},
    )
    path_mappings = fields.List(
        fields.String(validate=_mapping),
        load_default=list,
        metadata={
            "doc": "How a path on this machine maps to the path Plex sees, as "
            '"local_prefix=plex_prefix" strings, e.g. ["/srv/media=/data"]; empty: the same '
            "paths. With mappings, a path under none of them is not refreshed"
        },
    )
    scan_wait_seconds = fields.Float(
        load_default=60.0,
        validate=validate.Range(min=0, max=3600),
        metadata={
            "doc": "After a partial refresh, how long to wait for Plex to list a downloaded "
            "item before giving up on putting it in its playlist's collection"
        },
    )


def parse_mappings(values: Sequence[str]) -> list[tuple[str, str]]:
    """`["local=plex", ...]` as (local, plex) prefixes without a trailing slash, longest local
    prefix first (so the most specific mapping wins)."""
    pairs = []
    for value in values:
        local, _, remote = value.partition("=")
        pairs.append((local.strip().rstrip("/") or "/", remote.strip().rstrip("/") or "/"))
    return sorted(pairs, key=lambda pair: len(pair[0]), reverse=True)


def is_configured(config: Mapping[str, Any]) -> bool:
    return bool(config.get("url")) and bool(config.get("token"))


__all__ = [
    "DEFAULT_PLEX_TV_URL",
    "PlexSettings",
    "ValidationError",
    "is_configured",
    "parse_mappings",
]
