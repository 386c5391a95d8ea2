"""Slice 5: what other plugins use: refresh_path, add_to_collection, youtube downloads."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp.test_utils import TestServer
from medianest_server.appkeys import SERVICES
from medianest_server.plugin_api import make_event
from medianest_server.testing import MediaNestClient

from medianest_plex.config import PlexSettings, ValidationError, parse_mappings
from medianest_plex.service import PlexService
from medianest_plex.testing import FakeItem, FakePlex


@pytest.fixture
def medianest_database_url(medianest_each_database: str) -> str:
    """Collections are recorded in plex_collections: every test here runs on both databases."""
    return medianest_each_database


@pytest.fixture
def medianest_settings(plex: FakePlex) -> dict[str, Any]:
    return {
        "plugins": {
            "plex": {
                "url": plex.server_url,
                "token": plex.owner.token,
                "plex_tv_url": plex.tv_url,
                "path_mappings": ["/srv/media=/data", "/srv/media/youtube=/data/youtube"],
            }
        }
    }


def plex_service(app: TestServer) -> PlexService:
    service = app.app[SERVICES].registry.get("plex", PlexService)
    assert service is not None
    return service


def test_path_mappings_are_checked_and_longest_first() -> None:
    loaded = PlexSettings().load({"path_mappings": ["/a=/x", "/a/b/=/y/"]})
    assert parse_mappings(loaded["path_mappings"]) == [("/a/b", "/y"), ("/a", "/x")]
    with pytest.raises(ValidationError):
        PlexSettings().load({"path_mappings": ["no-equals-sign"]})
    with pytest.raises(ValidationError):
        PlexSettings().load({"path_mappings": ["relative=/data"]})


async def test_plex_path_maps_only_what_a_mapping_holds(medianest_app: TestServer) -> None:
    plex = plex_service(medianest_app)
    assert plex.plex_path("/srv/media/youtube/Mix/a.mp4") == "/data/youtube/Mix/a.mp4"
    assert plex.plex_path("/srv/media/movies/b.mkv") == "/data/movies/b.mkv"
    assert plex.plex_path("/srv/mediaX/b.mkv") is None
    assert plex.plex_path("/elsewhere/b.mkv") is None


async def test_refresh_path_scans_only_the_folder_in_its_library(
    medianest_app: TestServer, plex: FakePlex
) -> None:
    service = plex_service(medianest_app)
    key = await service.refresh_path("/srv/media/youtube/My Mix/Video.mp4")
    assert key == "3"
    [call] = plex.server.refresh_calls
    assert (call.section_key, call.path) == ("3", "/data/youtube/My Mix")
    assert await service.refresh_path("/elsewhere/Video.mp4") is None
    assert await service.refresh_path("/srv/media/music/Song.mp3") is None  # no such library
    assert len(plex.server.refresh_calls) == 1


async def test_add_to_collection_creates_once_then_reuses(
    medianest_app: TestServer, plex: FakePlex
) -> None:
    service = plex_service(medianest_app)
    first, second = (plex.server.add_item(3, t, f"/data/youtube/{t}.mp4") for t in ("A", "B"))
    key = await service.add_to_collection("3", "My Mix", [str(first.rating_key)])
    again = await service.add_to_collection(3, "My Mix", [str(second.rating_key)])
    assert key == again
    [collection] = plex.server.collections_named("My Mix")
    assert collection.members == (first.rating_key, second.rating_key)


async def publish_download(
    app: TestServer, path: str, playlist: str | None = None, *, user_id: int = 1
) -> None:
    """What the YouTube plugin publishes when a download is done (user 1: the first admin)."""
    data = {
        "user_id": user_id,
        "path": path,
        "playlist": playlist,
        "title": path.rsplit("/", 1)[-1],
    }
    await app.app[SERVICES].events.publish(
        make_event("youtube.download.completed", data, topic=f"user:{user_id}")
    )


async def download_into_playlist(
    app: TestServer, plex: FakePlex, n: int, playlist: str, *, user_id: int
) -> FakeItem:
    """One playlist video downloaded: published, refreshed, then found by Plex's scan."""
    folder = f"/srv/media/youtube/{playlist}"
    await publish_download(app, f"{folder}/Video {n}.mp4", playlist=playlist, user_id=user_id)
    await plex.server.wait_for_refresh(len(plex.server.refresh_calls) + 1)
    await asyncio.sleep(0.05)  # the plugin looks once before Plex's scan finds it
    return plex.server.add_item(3, f"{playlist} {n}", f"/data/youtube/{playlist}/Video {n}.mp4")


async def until(check: Callable[[], bool], seconds: float = 5.0) -> None:
    async with asyncio.timeout(seconds):
        while not check():
            await asyncio.sleep(0.02)


async def test_a_download_refreshes_its_folder_once_without_a_playlist(
    medianest_app: TestServer, plex: FakePlex
) -> None:
    await publish_download(medianest_app, "/srv/media/youtube/Single.mp4")
    await plex.server.wait_for_refresh(1)
    await asyncio.sleep(0.1)
    [call] = plex.server.refresh_calls
    assert (call.section_key, call.path) == ("3", "/data/youtube")
    assert not [c for c in plex.server.sections[3].collections]


async def test_a_playlist_download_lands_in_one_collection_named_after_it(
    medianest_app: TestServer, plex: FakePlex, admin_client: MediaNestClient
) -> None:
    for n in (1, 2):
        local = f"/srv/media/youtube/Road Trip/Video {n}.mp4"
        await publish_download(medianest_app, local, playlist="Road Trip")
        await plex.server.wait_for_refresh(n)
        await asyncio.sleep(0.05)  # the plugin looks once before Plex's scan finds it
        item = plex.server.add_item(3, f"Video {n}", f"/data/youtube/Road Trip/Video {n}.mp4")
        await until(
            lambda item=item: any(  # type: ignore[misc]
                item.rating_key in c.members for c in plex.server.collections_named("Road Trip")
            )
        )
    assert [(c.section_key, c.path) for c in plex.server.refresh_calls] == [
        ("3", "/data/youtube/Road Trip")
    ] * 2
    [collection] = plex.server.collections_named("Road Trip")
    assert len(collection.members) == 2


async def test_a_download_outside_every_mapping_or_library_is_ignored(
    medianest_app: TestServer, plex: FakePlex, caplog: pytest.LogCaptureFixture
) -> None:
    await publish_download(medianest_app, "/tmp/elsewhere/Video.mp4", playlist="X")
    await publish_download(medianest_app, "/srv/media/music/Song.mp3", playlist="X")
    await publish_download(medianest_app, "/srv/media/youtube/Last.mp4")  # handled in order
    await plex.server.wait_for_refresh(1)
    await asyncio.sleep(0.1)
    assert [c.section_key for c in plex.server.refresh_calls] == ["3"]
    assert not plex.server.collections_named("X")
    assert "under no path mapping" in caplog.text and "in no Plex library" in caplog.text


async def wait_for_member(plex: FakePlex, item: FakeItem) -> str:
    """The title of the collection `item` ends up in."""
    async with asyncio.timeout(5):
        while True:
            for collection in plex.server.sections[3].collections:
                if item.rating_key in collection.members:
                    return str(collection.title)
            await asyncio.sleep(0.02)


Friend = Callable[..., Awaitable[tuple[MediaNestClient, int]]]


async def test_each_persons_playlist_is_their_own_collection(
    medianest_app: TestServer, plex: FakePlex, admin_client: MediaNestClient, friend: Friend
) -> None:
    """Two people download a playlist of the same name: each gets a collection of their own,
    shown as theirs in their view; their next download of it goes to the same one."""
    browser, bob_id = await friend("bob", sections=[3])
    admin = admin_client.user
    assert admin is not None

    first = await download_into_playlist(medianest_app, plex, 1, "Mix", user_id=admin.id)
    assert await wait_for_member(plex, first) == "Mix"
    second = await download_into_playlist(medianest_app, plex, 2, "Mix", user_id=bob_id)
    assert await wait_for_member(plex, second) == "Mix (bob)"
    third = await download_into_playlist(medianest_app, plex, 3, "Mix", user_id=bob_id)
    assert await wait_for_member(plex, third) == "Mix (bob)"
    assert sorted(c.title for c in plex.server.sections[3].collections) == ["Mix", "Mix (bob)"]

    listed = await (await browser.get("/api/v1/plex/collections?section=3")).json()
    assert [(c["title"], c["mine"]) for c in listed["collections"]] == [
        ("Mix (bob)", True),
        ("Mix", False),
    ]
    only_mine = await (await browser.get("/api/v1/plex/collections?section=3&mine=1")).json()
    assert [c["title"] for c in only_mine["collections"]] == ["Mix (bob)"]
    page = await (await browser.get("/plex/collections/3")).text()
    assert page.count("Your playlist") == 1
    bad = await browser.get("/api/v1/plex/collections?section=3&mine=maybe")
    assert bad.status == 400 and "mine" in (await bad.json())["error"]["details"]


async def test_no_collection_in_a_library_the_person_cannot_see(
    medianest_app: TestServer,
    plex: FakePlex,
    admin_client: MediaNestClient,
    friend: Friend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    _, carol_id = await friend("carol", sections=[1])  # films only, not the YouTube library
    await publish_download(
        medianest_app, "/srv/media/youtube/Hers/Video.mp4", playlist="Hers", user_id=carol_id
    )
    await plex.server.wait_for_refresh(1)  # the file is still scanned in
    async with asyncio.timeout(5):
        while "is not shared with carol" not in caplog.text:
            await asyncio.sleep(0.02)
    assert not plex.server.sections[3].collections


async def test_deleting_a_person_forgets_which_collections_were_theirs(
    medianest_app: TestServer, plex: FakePlex, admin_client: MediaNestClient, friend: Friend
) -> None:
    _, dave_id = await friend("dave", sections=[3])
    item = await download_into_playlist(medianest_app, plex, 1, "Trip", user_id=dave_id)
    await wait_for_member(plex, item)
    db = medianest_app.app[SERVICES].db
    assert await db.fetch_val("SELECT count(*) FROM plex_collections") == 1
    deleted = await admin_client.delete(f"/api/v1/admin/users/{dave_id}")
    assert deleted.status in (200, 204), await deleted.text()
    assert await db.fetch_val("SELECT count(*) FROM plex_collections") == 0


async def test_a_collection_is_never_taken_over_whoever_shares_a_name(
    medianest_app: TestServer, plex: FakePlex, admin_client: MediaNestClient, friend: Friend
) -> None:
    """Plex display names are the users' own choice and not unique: two people both shown as
    "Bob", and an admin's own collection named like one of theirs, each keep their own."""
    admin = admin_client.user
    assert admin is not None
    _, bob_id = await friend("bob", sections=[3])
    _, other_id = await friend("bob2", sections=[3])
    await medianest_app.app[SERVICES].db.execute(
        "UPDATE users SET display_name = 'Bob' WHERE id IN (:a, :b)", {"a": bob_id, "b": other_id}
    )
    hand_made = plex.server.add_item(3, "Admin's pick", "/data/youtube/pick.mp4")
    await plex_service(medianest_app).add_to_collection(3, "Mix (bob2)", [hand_made.rating_key])

    first = await download_into_playlist(medianest_app, plex, 1, "Mix", user_id=admin.id)
    assert await wait_for_member(plex, first) == "Mix"
    second = await download_into_playlist(medianest_app, plex, 2, "Mix", user_id=bob_id)
    assert await wait_for_member(plex, second) == "Mix (bob)"
    third = await download_into_playlist(medianest_app, plex, 3, "Mix", user_id=other_id)
    assert await wait_for_member(plex, third) == f"Mix (#{other_id})"
    [picked] = plex.server.collections_named("Mix (bob2)")
    assert picked.members == (hand_made.rating_key,)  # the admin's stays the admin's
    rows = await medianest_app.app[SERVICES].db.fetch_all(
        "SELECT user_id, title FROM plex_collections ORDER BY id"
    )
    assert [(r["user_id"], r["title"]) for r in rows] == [
        (admin.id, "Mix"),
        (bob_id, "Mix (bob)"),
        (other_id, f"Mix (#{other_id})"),
    ]


async def test_an_event_delivered_twice_is_handled_once(
    medianest_app: TestServer, plex: FakePlex, admin_client: MediaNestClient
) -> None:
    """With Redis every instance receives the event; the first to claim it handles it."""
    admin = admin_client.user
    assert admin is not None
    event = make_event(
        "youtube.download.completed",
        {"user_id": admin.id, "path": "/srv/media/youtube/Once.mp4", "playlist": None},
        topic=f"user:{admin.id}",
    )
    bus = medianest_app.app[SERVICES].events
    await bus.publish(event)
    await bus.publish(event)  # as a second instance would receive it
    await plex.server.wait_for_refresh(1)
    await asyncio.sleep(0.2)
    assert len(plex.server.refresh_calls) == 1
