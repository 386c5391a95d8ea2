"""The settings of `[plugins.plex]`."""

from __future__ import annotations

from collections.abc import Sequence

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
    """`url` and `token` are the setup settings: without them the core keeps the plugin
    `not_configured` (mounted, not started) and asks an admin to connect Plex from the
    dashboard, so installing it never breaks a running MediaNest."""

    url = fields.String(
        load_default="",
        validate=_empty_or_http_url,
        metadata={
            "label": "Plex server address",
            "doc": "Where MediaNest reaches your Plex Media Server, e.g. http://192.168.1.10:32400",
            "setup": True,
        },
    )
    token = fields.String(
        load_default="",
        metadata={
            "label": "Server owner's Plex token",
            "doc": "The X-Plex-Token of the server's owner (or token_file in medianest.toml). "
            "Signing in with Plex on the dashboard fills it in for you",
            "secret": True,
            "setup": True,
        },
    )
    plex_tv_url = fields.Url(
        load_default=DEFAULT_PLEX_TV_URL,
        schemes={"http", "https"},
        require_tld=False,
        metadata={"label": "plex.tv address", "doc": "Change only for tests"},
    )
    product = fields.String(
        load_default="MediaNest",
        validate=validate.Length(min=1, max=100),
        metadata={
            "label": "Product name",
            "doc": "How MediaNest is named in people's Plex devices",
        },
    )
    client_identifier = fields.String(
        load_default="",
        validate=validate.Length(max=200),
        metadata={
            "label": "Client identifier",
            "doc": "X-Plex-Client-Identifier; empty: generated once and kept in the plugin's "
            "data folder",
        },
    )
    library_cache_seconds = fields.Float(
        load_default=60.0,
        validate=validate.Range(min=0, max=86400),
        metadata={
            "label": "Library cache (seconds)",
            "doc": "How long library listings, items and searches are kept per person",
        },
    )
    recent_cache_seconds = fields.Float(
        load_default=30.0,
        validate=validate.Range(min=0, max=86400),
        metadata={
            "label": "Recently added cache (seconds)",
            "doc": "How long recently added lists are kept per person",
        },
    )
    path_mappings = fields.List(
        fields.String(validate=_mapping),
        load_default=list,
        metadata={
            "label": "Path mappings",
            "doc": "How a folder on this machine is named on the Plex server, one mapping "
            "each as local=plex, e.g. /srv/media=/data. Empty: Plex sees the same paths; "
            "with mappings, a download under none of them is not refreshed",
        },
    )
    scan_wait_seconds = fields.Float(
        load_default=60.0,
        validate=validate.Range(min=0, max=3600),
        metadata={
            "label": "Wait for a scan (seconds)",
            "doc": "After a partial refresh, how long to wait for Plex to list a downloaded "
            "item before giving up on putting it in its playlist's collection",
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


__all__ = [
    "DEFAULT_PLEX_TV_URL",
    "PlexSettings",
    "ValidationError",
    "parse_mappings",
]
