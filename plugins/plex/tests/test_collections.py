"""Slice 6: collections: JSON list, detail, create and add (admin), and a page."""

from __future__ import annotations

import html

from medianest_server.testing import MediaNestClient

from medianest_plex.testing import FakePlex


async def test_list_and_detail_of_a_collection(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    response = await admin_client.get("/api/v1/plex/collections?section=1")
    assert response.status == 200
    [favourites] = (await response.json())["collections"]
    assert favourites["title"] == "Favourites" and favourites["child_count"] == 1
    detail = await admin_client.get(f"/api/v1/plex/collections/{favourites['rating_key']}")
    body = await detail.json()
    assert detail.status == 200 and [i["title"] for i in body["items"]] == ["Example Movie"]
    assert (await admin_client.get("/api/v1/plex/collections?section=x")).status == 400
    movie = next(i for i in plex.server.items.values() if i.type == "movie")
    assert (await admin_client.get(f"/api/v1/plex/collections/{movie.rating_key}")).status == 404


async def test_an_admin_creates_a_collection_and_adds_items(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    movies = [i.rating_key for i in plex.server.sections[1].items]
    listed = await admin_client.get("/api/v1/plex/collections?section=1")  # now cached
    assert len((await listed.json())["collections"]) == 1
    created = await admin_client.post(
        "/api/v1/plex/collections",
        json={"section": "1", "title": "Weekend", "items": [str(movies[1])]},
    )
    assert created.status == 201
    body = await created.json()
    assert body["title"] == "Weekend" and [i["rating_key"] for i in body["items"]] == [
        str(movies[1])
    ]
    added = await admin_client.post(
        f"/api/v1/plex/collections/{body['rating_key']}/items", json={"items": [movies[2]]}
    )
    assert added.status == 200
    assert len((await added.json())["items"]) == 2
    [weekend] = plex.server.collections_named("Weekend")
    assert weekend.members == (movies[1], movies[2])
    listed = await admin_client.get("/api/v1/plex/collections?section=1")
    assert {c["title"] for c in (await listed.json())["collections"]} == {"Favourites", "Weekend"}

    again = await admin_client.post(
        "/api/v1/plex/collections",
        json={"section": 1, "title": "Weekend", "items": [movies[3]]},
    )
    assert again.status == 201 and len(plex.server.collections_named("Weekend")) == 1
    bad = await admin_client.post(
        "/api/v1/plex/collections", json={"section": "1", "title": "", "items": []}
    )
    assert bad.status == 400
    assert set((await bad.json())["error"]["details"]) == {"title", "items"}
    episode = next(i for i in plex.server.items.values() if i.type == "episode")
    other_library = await admin_client.post(
        f"/api/v1/plex/collections/{weekend.rating_key}/items",
        json={"items": [episode.rating_key]},
    )
    assert other_library.status == 400


async def test_only_admins_change_collections(user_client: MediaNestClient, plex: FakePlex) -> None:
    [favourites] = plex.server.collections_named("Favourites")
    created = await user_client.post(
        "/api/v1/plex/collections", json={"section": "1", "title": "Mine", "items": ["1001"]}
    )
    assert created.status == 403
    added = await user_client.post(
        f"/api/v1/plex/collections/{favourites.rating_key}/items", json={"items": ["1002"]}
    )
    assert added.status == 403
    assert not plex.server.collections_named("Mine")


async def test_the_collections_page_lists_them(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    page = await admin_client.get("/plex/collections/1")
    text = html.unescape(await page.text())
    assert page.status == 200 and "Favourites" in text and "1 item" in text
    assert "/plex/item/" in text and plex.owner.token not in text
    assert (await admin_client.get("/plex/collections/3")).status == 200
    assert (await admin_client.get("/plex/collections/99")).status == 404
