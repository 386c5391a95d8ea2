"""The settings of `[plugins.plex]`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from marshmallow import Schema, ValidationError, fields, validate

DEFAULT_PLEX_TV_URL = "https://plex.tv"


_http_url = validate.URL(schemes={"http", "https"}, require_tld=False)


def _empty_or_http_url(value: str) -> None:
    if value:
        _http_url(value)


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


def is_configured(config: Mapping[str, Any]) -> bool:
    return bool(config.get("url")) and bool(config.get("token"))


__all__ = ["DEFAULT_PLEX_TV_URL", "PlexSettings", "ValidationError", "is_configured"]
