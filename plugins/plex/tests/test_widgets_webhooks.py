"""Slice 4: dashboard widgets and Plex's webhooks."""

from __future__ import annotations

import html
import json
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from medianest_server.testing import MediaNestClient
from medianest_server.web.webhooks import webhook_secret  # no public way to learn it yet

from medianest_plex.testing import FakePlex
from medianest_plex.testing.webhooks import plex_webhook, webhook_payload


def hook_url(app: TestServer) -> str:
    return f"/api/v1/webhooks/plex/events/{webhook_secret(app.app, 'plex', 'events')}"


def multipart(payload: Any, *, raw: str | None = None) -> aiohttp.FormData:
    """The body as Plex sends it: a `payload` part typed application/json, and a thumbnail."""
    form = aiohttp.FormData()
    text = raw if raw is not None else json.dumps(payload)
    form.add_field("payload", text, content_type="application/json")
    form.add_field("thumb", b"\xff\xd8\xff", filename="image.jpg", content_type="image/jpeg")
    return form


async def widget(client: MediaNestClient, widget_id: str) -> str:
    response = await client.get(f"/dashboard/widgets/plex/{widget_id}")
    assert response.status == 200
    return html.unescape(await response.text())


async def test_the_dashboard_shows_status_recent_and_libraries(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    assert f"Plex {plex.server.version}" in await widget(admin_client, "status")
    assert "active stream" in await widget(admin_client, "status")
    assert "Movies" in await widget(admin_client, "libraries")
    recent = await widget(admin_client, "recent")
    assert "/plex/item/" in recent and "/plex/photo?" in recent


async def test_library_new_publishes_guids_and_reaches_recently_added(
    admin_client: MediaNestClient,
    anonymous_client: MediaNestClient,
    medianest_app: TestServer,
    plex: FakePlex,
) -> None:
    await widget(admin_client, "recent")  # cached now
    item = plex.server.add_item(1, "Brand New Film", "/data/movies/Brand New Film.mkv")
    payload = {
        "event": "library.new",
        "Metadata": {
            "ratingKey": str(item.rating_key),
            "title": "Brand New Film",
            "type": "movie",
            "librarySectionID": 1,
            "Guid": [{"id": "tmdb://12345"}, {"id": "imdb://tt0012345"}],
        },
    }
    response = await anonymous_client.post(hook_url(medianest_app), data=multipart(payload))
    assert response.status == 200
    assert (await response.json())["guids"] == ["tmdb://12345", "imdb://tt0012345"]
    assert "Brand New Film" in await widget(admin_client, "recent")


async def test_malformed_payload_is_400_and_wrong_secret_401(
    anonymous_client: MediaNestClient, medianest_app: TestServer
) -> None:
    bad = await anonymous_client.post(hook_url(medianest_app), data=multipart(None, raw="{nope"))
    assert bad.status == 400
    no_metadata = await anonymous_client.post(
        hook_url(medianest_app), data=multipart({"event": "library.new"})
    )
    assert no_metadata.status == 400
    wrong = await anonymous_client.post(
        "/api/v1/webhooks/plex/events/wrong", data=multipart({"event": "media.play"})
    )
    assert wrong.status == 401


async def test_other_events_are_accepted_and_ignored(
    anonymous_client: MediaNestClient, medianest_app: TestServer
) -> None:
    response = await anonymous_client.post(
        hook_url(medianest_app), data=multipart({"event": "media.play", "Metadata": {}})
    )
    assert response.status == 200
    assert (await response.json())["handled"] is False


@pytest.mark.parametrize(
    ("typed", "thumb"),
    [(True, True), (True, False), (False, True), (False, False)],
    ids=["json-part-with-thumb", "json-part", "untyped-part-with-thumb", "untyped-part"],
)
async def test_a_real_shaped_library_new_webhook_is_taken(
    anonymous_client: MediaNestClient,
    admin_client: MediaNestClient,
    medianest_app: TestServer,
    plex: FakePlex,
    typed: bool,
    thumb: bool,
) -> None:
    """What Plex sends (payload part typed application/json, thumbnail beside it) and the
    plainer shape some relays send (an untyped part, no thumbnail) are both read."""
    item = plex.server.add_item(1, "Fresh From Plex", "/data/movies/Fresh From Plex.mkv")
    payload = webhook_payload(plex.server, "library.new", account=plex.owner, item=item)
    assert payload["Metadata"]["librarySectionType"] == "movie"
    form = aiohttp.FormData()
    form.add_field(
        "payload", json.dumps(payload), content_type="application/json" if typed else None
    )
    if thumb:
        form.add_field("thumb", b"\xff\xd8\xff", filename="image.jpg", content_type="image/jpeg")
    response = await anonymous_client.post(hook_url(medianest_app), data=form)
    assert response.status == 200, await response.text()
    assert (await response.json())["handled"] is True
    assert "Fresh From Plex" in await widget(admin_client, "recent")


@pytest.mark.parametrize("event", ["media.play", "media.stop", "library.on.deck"])
async def test_every_plex_event_as_plex_sends_it_is_accepted(
    anonymous_client: MediaNestClient, medianest_app: TestServer, plex: FakePlex, event: str
) -> None:
    item = next(iter(plex.server.items.values()))
    form = plex_webhook(plex.server, event, account=plex.owner, item=item)
    response = await anonymous_client.post(hook_url(medianest_app), data=form)
    assert response.status == 200
    assert (await response.json()) == {"ok": True, "handled": False}
