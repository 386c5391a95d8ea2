"""Slice 3: the library (JSON and pages), per-user tokens, caching, the image proxy."""

from __future__ import annotations

import html
import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
from aiohttp.test_utils import TestServer
from medianest_server.appkeys import SERVICES
from medianest_server.plugin_api import ManualClock
from medianest_server.testing import MediaNestClient

from medianest_plex.images import ImageSigner
from medianest_plex.service import PlexService
from medianest_plex.testing import FakePlex, PlexAccount


async def signed_in_with_plex(
    medianest_app: TestServer,
    aiohttp_client: Any,
    plex: FakePlex,
    clock: ManualClock,
    account: PlexAccount,
) -> MediaNestClient:
    client: MediaNestClient = await aiohttp_client(medianest_app)
    assert (await client.get("/plex/login")).status == 200
    pin_id = max(plex.tv.pins)
    plex.tv.approve_pin(pin_id, account)
    clock.advance(3)
    done = await client.get(f"/plex/login/check?pin={pin_id}", allow_redirects=False)
    assert done.status == 303
    return client


async def test_a_local_admin_sees_every_library_with_counts(
    admin_client: MediaNestClient,
) -> None:
    response = await admin_client.get("/api/v1/plex/libraries")
    assert response.status == 200
    libraries = (await response.json())["libraries"]
    assert [lib["key"] for lib in libraries] == ["1", "2", "3"]
    assert libraries[0]["count"] > 0 and all(isinstance(lib["count"], int) for lib in libraries)


async def test_a_20000_item_library_pages_correctly(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    plex.server.generate_library(4, 20_000)
    first = await (await admin_client.get("/api/v1/plex/libraries/4/items?size=50")).json()
    assert (first["total"], first["start"], first["size"]) == (20_000, 0, 50)
    second = await (
        await admin_client.get("/api/v1/plex/libraries/4/items?start=50&size=50")
    ).json()
    keys = [i["rating_key"] for i in first["items"]] + [i["rating_key"] for i in second["items"]]
    assert len(set(keys)) == 100
    last = await (
        await admin_client.get("/api/v1/plex/libraries/4/items?start=19990&size=50")
    ).json()
    assert (last["start"], last["size"], last["total"]) == (19_990, 10, 20_000)
    titles = [i["title"].lower() for i in first["items"]]
    assert titles == sorted(titles) or len(titles) == 50
    page = await admin_client.get("/plex/library/4?start=100&size=50")
    text = await page.text()
    assert page.status == 200 and "101 to 150 of 20000" in text
    assert 'rel="next"' in text and 'rel="prev"' in text


async def test_sort_and_filters_reach_plex(admin_client: MediaNestClient, plex: FakePlex) -> None:
    plex.server.generate_library(4, 500)
    body = await (
        await admin_client.get("/api/v1/plex/libraries/4/items?sort=year&unwatched=1&size=100")
    ).json()
    years = [i["year"] for i in body["items"]]
    assert years == sorted(years, reverse=True)
    assert not any(i["watched"] for i in body["items"])
    bad = await admin_client.get("/api/v1/plex/libraries/4/items?sort=colour")
    assert bad.status == 400


async def test_responses_are_cached_per_user(admin_client: MediaNestClient, plex: FakePlex) -> None:
    plex.server.generate_library(4, 100)
    path = "/library/sections/4/all"
    before = plex.server.requests[path]
    for _ in range(3):
        assert (await admin_client.get("/api/v1/plex/libraries/4/items")).status == 200
    assert plex.server.requests[path] == before + 1


async def test_a_friend_sees_only_what_is_shared_with_their_own_token(
    medianest_app: TestServer, aiohttp_client: Any, plex: FakePlex, clock: ManualClock
) -> None:
    bob = plex.tv.add_friend("bob", sections=[1])
    client = await signed_in_with_plex(medianest_app, aiohttp_client, plex, clock, bob)
    libraries = (await (await client.get("/api/v1/plex/libraries")).json())["libraries"]
    assert [lib["key"] for lib in libraries] == ["1"]
    assert (await client.get("/api/v1/plex/libraries/2/items")).status == 404

    plex.server.grants.pop(plex.tv.server_token(bob) or "")  # Plex now refuses bob's token
    refused = await client.get("/api/v1/plex/recent")
    assert refused.status == 401
    assert (await refused.json())["error"]["code"] == "plex_unauthorized"
    page = await client.get("/plex/")
    assert page.status == 401 and "Sign in with Plex" in await page.text()
    assert (await client.get("/api/v1/me")).status == 200  # still signed in to MediaNest


async def test_a_user_without_plex_is_asked_to_sign_in_with_plex(
    user_client: MediaNestClient,
) -> None:
    response = await user_client.get("/api/v1/plex/libraries")
    assert response.status == 401
    assert "sign in with Plex again" in (await response.json())["error"]["message"]


async def test_pages_render_sections_recent_item_and_search(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    index = await admin_client.get("/plex/")
    text = await index.text()
    assert index.status == 200 and "Movies" in text and "Recently added" in text
    assert plex.owner.token not in text

    show = next(i for i in plex.server.items.values() if i.type == "show")
    detail = await (await admin_client.get(f"/api/v1/plex/items/{show.rating_key}")).json()
    assert detail["children"] and detail["plex_url"].startswith("https://app.plex.tv/")
    page = await admin_client.get(f"/plex/item/{show.rating_key}")
    assert page.status == 200 and "Open in Plex" in await page.text()

    movie = next(i for i in plex.server.items.values() if i.type == "movie")
    word = movie.title.split()[0]
    found = await (await admin_client.get(f"/api/v1/plex/search?q={word}")).json()
    assert movie.title in [i["title"] for i in found["items"]]
    assert movie.title in html.unescape(
        await (await admin_client.get(f"/plex/search?q={word}")).text()
    )
    assert (await admin_client.get("/plex/item/999999")).status == 404


async def test_plex_down_the_page_says_so_and_renders(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    await plex.stop_server()
    page = await admin_client.get("/plex/")
    assert page.status == 200
    assert "Plex is not answering" in await page.text()
    assert (await admin_client.get("/api/v1/plex/libraries")).status == 503


@pytest.mark.parametrize("path", ["/plex/", "/plex/search?q=uncached words", "/plex/item/1001"])
async def test_plex_down_every_page_renders_the_error_in_plain_words(
    friend: Any, admin_client: MediaNestClient, plex: FakePlex, path: str
) -> None:
    """Down, then its circuit breaker open: the page renders, says so plainly, and names no
    internal address; the admin's health page has the cause."""
    user_client, _ = await friend("bob", sections=[1, 2])
    await plex.stop_server()
    for _ in range(6):  # past the breaker's failure threshold
        page = await user_client.get(path)
        text = html.unescape(await page.text())
        assert page.status == 200, text[:500]
        main = text[text.index("<main") : text.index("</main>")]
        assert "Plex is not answering right now." in main
        assert "127.0.0.1" not in main and "Connect call failed" not in main
        assert "Nothing in the library matches" not in main
    api = await (await user_client.get("/api/v1/plex/search?q=more words")).json()
    assert api["error"]["message"] == "Plex is not answering right now."
    assert "127.0.0.1" not in json.dumps(api)
    health = html.unescape(await (await admin_client.get("/admin/health")).text())
    assert "Plex is unavailable (circuit open after 5 failures" in health  # the cause


async def test_the_image_proxy_fetches_only_signed_server_paths(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    items = (await (await admin_client.get("/api/v1/plex/recent")).json())["items"]
    url = next(i["thumb_url"] for i in items if i["thumb_url"])
    assert "token" not in url.lower()
    image = await admin_client.get(url)
    assert image.status == 200 and image.headers["Content-Type"].startswith("image/")
    assert "max-age=" in image.headers["Cache-Control"]
    assert (await image.read())[:2] == b"\xff\xd8"

    unsigned = url.split("&sig=")[0]
    assert (await admin_client.get(unsigned)).status == 403
    tampered = url.replace("w=300", "w=301")
    assert (await admin_client.get(tampered)).status == 403
    other_host = "/plex/photo?path=http%3A%2F%2Fevil.example%2Fx.jpg&w=300&h=450&sig=00"
    assert (await admin_client.get(other_host)).status == 403
    assert ImageSigner(b"k").url(1, "http://evil.example/x.jpg") is None
    assert ImageSigner(b"k").url(1, "//evil.example/x.jpg") is None
    calls = len(plex.server.transcode_calls)
    assert calls == 1


async def test_images_are_signed_for_one_person_and_fetched_with_their_own_token(
    friend: Any, admin_client: MediaNestClient, plex: FakePlex, medianest_app: TestServer
) -> None:
    """A friend sees posters of what is shared with them, through URLs made for them; the
    owner's poster URLs are refused, and once Plex revokes the friend, so are their own."""
    bob, bob_id = await friend("bob", sections=[1])
    bob_account = next(a for a in plex.tv.accounts.values() if a.username == "bob")
    owner_items = (await (await admin_client.get("/api/v1/plex/recent")).json())["items"]
    owner_tv = next(i for i in owner_items if i["section_id"] == 2 and i["thumb_url"])
    owner_movie = next(i for i in owner_items if i["section_id"] == 1 and i["thumb_url"])

    # a URL taken from the owner's page: refused (signed for someone else), Plex not asked
    calls = len(plex.server.transcode_calls)
    assert (await bob.get(owner_tv["thumb_url"])).status == 403
    assert (await bob.get(owner_movie["thumb_url"])).status == 403
    assert len(plex.server.transcode_calls) == calls

    # bob's own page: library 1 only, fetched with bob's server token, cached in his browser
    mine = (await (await bob.get("/api/v1/plex/recent")).json())["items"]
    assert {i["section_id"] for i in mine} == {1}
    poster = next(i["thumb_url"] for i in mine if i["thumb_url"])
    assert poster != owner_movie["thumb_url"]  # the same poster, another person's URL
    image = await bob.get(poster)
    assert image.status == 200
    assert image.headers["Cache-Control"] == "private, max-age=2592000, immutable"
    fetched = [r for r in plex.server.log if r.path == "/photo/:/transcode"][-1]
    assert fetched.headers["X-Plex-Token"] == plex.tv.server_token(bob_account)

    # a path of library 2 signed for bob (as a forged page would need) is still Plex's call
    service = medianest_app.app[SERVICES].registry.get("plex", PlexService)
    assert service is not None
    tv_path = parse_qs(urlsplit(owner_tv["thumb_url"]).query)["path"][0]
    forged = service.images.url(bob_id, tv_path)
    assert forged is not None and (await bob.get(forged)).status == 404

    # revoked at Plex: his own poster URL stops working too
    plex.server.grants.pop(plex.tv.server_token(bob_account) or "", None)
    assert (await bob.get(poster)).status == 403


async def test_the_library_needs_a_signed_in_user(anonymous_client: MediaNestClient) -> None:
    assert (await anonymous_client.get("/api/v1/plex/libraries")).status == 401
    photo = await anonymous_client.get("/plex/photo?path=/x&w=1&h=1&sig=x", allow_redirects=False)
    assert photo.status in (302, 303)


async def test_the_header_search_lists_library_matches(
    admin_client: MediaNestClient, plex: FakePlex
) -> None:
    movie = next(i for i in plex.server.items.values() if i.type == "movie")
    word = movie.title.split()[0]
    text = html.unescape(await (await admin_client.get(f"/search?q={word}")).text())
    assert movie.title in text and f"/plex/item/{movie.rating_key}" in text


async def test_the_header_search_names_the_show_of_an_episode(
    admin_client: MediaNestClient,
) -> None:
    text = html.unescape(await (await admin_client.get("/search?q=Episode 2")).text())
    # the show is the title, the episode the line under it (not "Episode 2" and a year)
    assert "Example Show" in text and "S1 · E2 · Episode 2" in text


@pytest.mark.parametrize(
    ("path", "field"),
    [
        ("/api/v1/plex/libraries/1/items?start=\u00b2", "start"),
        ("/api/v1/plex/libraries/1/items?size=\u2460", "size"),
        ("/api/v1/plex/libraries/1/items?start=" + "9" * 5000, "start"),
        ("/api/v1/plex/libraries/1/items?year=\u0661\u0669\u0668\u0664", "year"),
        ("/api/v1/plex/recent?section=\u00b2", "section"),
        ("/api/v1/plex/collections?section=\u2460", "section"),
        ("/api/v1/plex/collections?section=" + "1" * 5000, "section"),
    ],
)
async def test_numbers_are_ascii_digits_and_bounded_or_a_400_naming_them(
    admin_client: MediaNestClient, path: str, field: str
) -> None:
    response = await admin_client.get(path)
    assert response.status == 400, await response.text()
    assert field in (await response.json())["error"]["details"]


async def test_library_pages_refuse_odd_numbers_in_words(admin_client: MediaNestClient) -> None:
    page = await admin_client.get("/plex/library/1?start=\u00b2")
    assert page.status == 400
    assert "start" in html.unescape(await page.text())
    too_big = await admin_client.get("/plex/item/" + "9" * 30)
    assert too_big.status == 404


async def test_collection_bodies_are_validated_field_by_field(
    admin_client: MediaNestClient,
) -> None:
    bad = await admin_client.post(
        "/api/v1/plex/collections",
        json={"section": "\u00b2", "title": " ", "items": ["1", True, "\u2460"]},
    )
    assert bad.status == 400
    assert set((await bad.json())["error"]["details"]) == {"section", "title", "items"}
    surrogate = await admin_client.post(
        "/api/v1/plex/collections",
        data='{"section": 1, "title": "\\ud800", "items": [1]}',
        headers={"Content-Type": "application/json"},
    )
    assert surrogate.status == 400
