"""Plex's webhooks as Plex Media Server sends them (reference §1.6), for tests.

    form = plex_webhook(pms, "library.new", account=owner, item=item)
    await client.post(webhook_url, data=form)

The body is `multipart/form-data` with a `payload` part: the JSON event, sent by PMS with its
own `Content-Type: application/json` (aiohttp then hands it to a handler as bytes, not str),
and, for `media.play`, `media.rate`, `library.new`, `library.on.deck` and
`playback.started`, a `thumb` part: a JPEG file (`image/jpeg`, filename `image.jpg`).

Playback events add `Player` and, on `Metadata`, `viewOffset` (ms) and `lastViewedAt` (§1.6).

Where the reference is silent the fake chooses: the thumb's file name (`image.jpg`), the
`Player` block's values, the `viewOffset` value (`VIEW_OFFSET_MS`), that `lastViewedAt` is
now, that `media.rate`'s `rating` sits at the top level, and that `user`/`owner` are both true
for the owner's account.
`PMS_USER_AGENT` is the agent string PMS sends; nothing reads it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import aiohttp

from .library import FakeItem
from .plextv import PlexAccount
from .pms import FakePlexServer
from .render import item_json
from .wire import jpeg

THUMB_EVENTS = frozenset(
    {"media.play", "media.rate", "library.new", "library.on.deck", "playback.started"}
)
PLAYER_EVENTS = frozenset(
    {
        "media.play",
        "media.pause",
        "media.resume",
        "media.stop",
        "media.scrobble",
        "media.rate",
        "playback.started",
    }
)
PMS_USER_AGENT = "PlexMediaServer/1.41.3.9314-a0bfb8370"
VIEW_OFFSET_MS = 1_234_000  # the reference gives no value; a playback event carries one


def webhook_payload(
    pms: FakePlexServer,
    event: str,
    *,
    account: PlexAccount,
    item: FakeItem | None = None,
    owner: bool = True,
) -> dict[str, Any]:
    """The JSON Plex sends for `event`: `Account`, `Server`, `Player` for playback events and
    `Metadata` (the item as PMS lists it, with its library's fields and `Guid[]`)."""
    payload: dict[str, Any] = {
        "event": event,
        "user": True,
        "owner": owner,
        "Account": {"id": account.id, "thumb": account.thumb, "title": account.username},
        "Server": {"title": pms.friendly_name, "uuid": pms.machine_identifier},
    }
    if event in PLAYER_EVENTS:
        payload["Player"] = {
            "local": True,
            "publicAddress": "203.0.113.7",
            "title": "Living Room TV",
            "uuid": "c3b2a1d0e9f8a7b6",
        }
    if item is not None:
        metadata = item_json(item, pms, detail=True, with_section=True, guids=True)
        metadata["librarySectionType"] = pms.sections[item.section_key].type
        if event in PLAYER_EVENTS:  # where playback is (ms) and when it was watched (§1.6)
            metadata["viewOffset"] = VIEW_OFFSET_MS
            metadata["lastViewedAt"] = pms.now()
        payload["Metadata"] = metadata
    if event == "media.rate":
        payload["rating"] = 8.0
    return payload


def plex_webhook(
    pms: FakePlexServer,
    event: str,
    *,
    account: PlexAccount,
    item: FakeItem | None = None,
    payload: Mapping[str, Any] | None = None,
    thumb: bool | None = None,
) -> aiohttp.FormData:
    """The multipart body of one webhook, exactly as PMS sends it. `payload` replaces the
    generated JSON; `thumb` forces the thumbnail part on or off (default: as Plex does)."""
    body = (
        payload if payload is not None else webhook_payload(pms, event, account=account, item=item)
    )
    form = aiohttp.FormData()
    form.add_field("payload", json.dumps(body), content_type="application/json")
    if thumb if thumb is not None else event in THUMB_EVENTS:
        form.add_field("thumb", jpeg(300, 450), filename="image.jpg", content_type="image/jpeg")
    return form


__all__ = ["PMS_USER_AGENT", "THUMB_EVENTS", "plex_webhook", "webhook_payload"]
