"""The fakes speak Plex's wire format (shared/reference/external-apis.md §1, checklist §6).

These drive the fakes with a plain aiohttp client, so a fake that drifted from the reference
fails here rather than letting the plugin's own tests pass against the wrong contract.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
from aiohttp import web
from medianest_server.plugin_api import ManualClock

from medianest_plex.testing import FakePlex, FakePlexServer, jpeg, jpeg_size
from medianest_plex.testing.webhooks import plex_webhook, webhook_payload

CLIENT_ID = "5f1c2e3a-0000-4000-8000-abcdefabcdef"
JSON = {"Accept": "application/json"}
TV_HEADERS = {**JSON, "X-Plex-Client-Identifier": CLIENT_ID, "X-Plex-Product": "MediaNest"}
PIN_KEYS = {
    "id",
    "code",
    "product",
    "trusted",
    "qr",
    "clientIdentifier",
    "location",
    "expiresIn",
    "createdAt",
    "expiresAt",
    "authToken",
    "newRegistration",
}


async def _json(
    session: aiohttp.ClientSession, method: str, url: str, **headers: str
) -> tuple[int, Any]:
    async with session.request(method, url, headers=headers) as response:
        if response.content_type != "application/json":  # PMS errors are HTML pages
            return response.status, await response.text()
        return response.status, await response.json()


def _owner(plex: FakePlex) -> dict[str, str]:
    return {**JSON, "X-Plex-Token": plex.owner.token}


# -- plex.tv -------------------------------------------------------------------------------------


async def test_strong_pin_has_the_reference_fields_and_types(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    status, pin = await _json(
        session, "POST", f"{plex.tv_url}/api/v2/pins?strong=true", **TV_HEADERS
    )
    assert status == 201
    assert set(pin) == PIN_KEYS
    assert isinstance(pin["id"], int) and len(pin["code"]) == 25
    assert pin["authToken"] is None and pin["newRegistration"] is None
    assert pin["expiresIn"] == 1800 and pin["expiresAt"].endswith("Z")
    assert pin["clientIdentifier"] == CLIENT_ID and pin["product"] == "MediaNest"
    status, short = await _json(session, "POST", f"{plex.tv_url}/api/v2/pins", **TV_HEADERS)
    assert len(short["code"]) == 4 and short["expiresIn"] == 900


async def test_pin_without_client_identifier_is_refused_as_plex_does(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    status, body = await _json(session, "POST", f"{plex.tv_url}/api/v2/pins?strong=true", **JSON)
    assert status == 400
    assert body == {
        "errors": [{"code": 1000, "message": "X-Plex-Client-Identifier is missing", "status": 400}]
    }


async def test_plex_tv_answers_xml_without_accept_json(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    headers = {"X-Plex-Client-Identifier": CLIENT_ID}
    async with session.post(f"{plex.tv_url}/api/v2/pins?strong=true", headers=headers) as r:
        assert r.status == 201 and r.content_type == "application/xml"
        pin = ElementTree.fromstring(await r.read())
    assert pin.tag == "pin" and pin.get("id") and pin.get("code")
    assert pin.get("authToken") is None  # not yet approved
    user_headers = {**headers, "X-Plex-Token": plex.owner.token}
    async with session.get(f"{plex.tv_url}/api/v2/user", headers=user_headers) as r:
        user = ElementTree.fromstring(await r.read())
    assert user.tag == "user" and user.get("scrobbleTypes") == ""  # python-plexapi needs it
    assert user.find("subscription") is not None and user.find("roles") is not None


async def test_pin_lifecycle_approval_then_expiry(
    plex: FakePlex, session: aiohttp.ClientSession, clock: ManualClock
) -> None:
    _, pin = await _json(session, "POST", f"{plex.tv_url}/api/v2/pins?strong=true", **TV_HEADERS)
    url = f"{plex.tv_url}/api/v2/pins/{pin['id']}"
    status, polled = await _json(session, "GET", url, **TV_HEADERS)
    assert status == 200 and polled["authToken"] is None and set(polled) == PIN_KEYS
    friend = plex.tv.add_friend("bob")
    plex.tv.approve_pin(pin["id"], friend)
    clock.advance(60)
    _, polled = await _json(session, "GET", url, **TV_HEADERS)
    assert polled["authToken"] == friend.token and polled["expiresIn"] == 1740
    other_client = {**TV_HEADERS, "X-Plex-Client-Identifier": "another-install"}
    status, body = await _json(session, "GET", url, **other_client)
    assert status == 404  # a PIN belongs to the client identifier that made it
    clock.advance(1800)
    status, body = await _json(session, "GET", url, **TV_HEADERS)
    assert status == 404
    assert body == {"errors": [{"code": 1020, "message": "Code not found or expired"}]}


async def test_user_json_and_bad_token(plex: FakePlex, session: aiohttp.ClientSession) -> None:
    status, user = await _json(
        session,
        "GET",
        f"{plex.tv_url}/api/v2/user",
        **TV_HEADERS,
        **{"X-Plex-Token": plex.owner.token},
    )
    assert status == 200
    assert user["id"] == plex.owner.id and isinstance(user["id"], int)
    assert user["uuid"] == plex.owner.uuid and user["authToken"] == plex.owner.token
    assert {"username", "title", "email", "thumb", "subscription", "roles", "joinedAt"} <= set(user)
    status, body = await _json(
        session, "GET", f"{plex.tv_url}/api/v2/user", **TV_HEADERS, **{"X-Plex-Token": "nope"}
    )
    assert status == 401
    assert body == {
        "errors": [{"code": 1001, "message": "User could not be authenticated", "status": 401}]
    }


async def test_resources_for_owner_friend_and_stranger(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    friend = plex.tv.add_friend("bob", sections=[1])
    stranger = plex.tv.add_stranger("eve")

    async def servers(token: str) -> list[dict[str, Any]]:
        status, body = await _json(
            session,
            "GET",
            f"{plex.tv_url}/api/v2/resources",
            **TV_HEADERS,
            **{"X-Plex-Token": token},
        )
        assert status == 200 and isinstance(body, list)
        assert any("player" in entry["provides"] for entry in body)  # devices are listed too
        return [entry for entry in body if "server" in entry["provides"].split(",")]

    (owned,) = await servers(plex.owner.token)
    assert owned["owned"] is True and owned["ownerId"] is None
    assert owned["clientIdentifier"] == plex.server.machine_identifier
    assert owned["accessToken"] == plex.owner.token
    assert owned["connections"][0]["uri"] == plex.server_url
    (shared,) = await servers(friend.token)
    assert shared["owned"] is False and shared["ownerId"] == plex.owner.id
    assert shared["accessToken"] not in (friend.token, plex.owner.token)
    assert shared["accessToken"] == plex.tv.server_token(friend)
    assert await servers(stranger.token) == []
    status, _ = await _json(
        session, "GET", f"{plex.tv_url}/api/v2/resources", **TV_HEADERS, **{"X-Plex-Token": "x"}
    )
    assert status == 401


async def test_legacy_friends_list_is_xml_even_when_json_is_asked(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    friend = plex.tv.add_friend("bob", sections=[1, 2])
    headers = {**TV_HEADERS, "X-Plex-Token": plex.owner.token}
    async with session.get(f"{plex.tv_url}/api/users", headers=headers) as response:
        assert response.content_type == "application/xml"
        root = ElementTree.fromstring(await response.read())
    (user,) = root.findall("User")
    assert user.get("id") == str(friend.id)
    server = user.find("Server")
    assert server is not None
    assert server.get("machineIdentifier") == plex.server.machine_identifier
    assert server.get("numLibraries") == "2"


# -- Plex Media Server -------------------------------------------------------------------------


async def test_identity_needs_no_token_and_has_typed_fields(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    status, body = await _json(session, "GET", f"{plex.server_url}/identity", **JSON)
    assert status == 200
    container = body["MediaContainer"]
    assert container == {
        "size": 0,
        "claimed": True,
        "machineIdentifier": plex.server.machine_identifier,
        "version": plex.server.version,
    }


@pytest.mark.parametrize("token", [None, "wrong"])
async def test_401_is_html_even_for_json_clients(
    plex: FakePlex, session: aiohttp.ClientSession, token: str | None
) -> None:
    headers = dict(JSON)
    if token:
        headers["X-Plex-Token"] = token
    async with session.get(f"{plex.server_url}/library/sections", headers=headers) as response:
        assert response.status == 401
        assert response.content_type == "text/html"
        assert response.headers["X-Plex-Protocol"] == "1.0"
        assert "<h1>401 Unauthorized</h1>" in await response.text()


async def test_token_in_query_works_too(plex: FakePlex, session: aiohttp.ClientSession) -> None:
    url = f"{plex.server_url}/library/sections?X-Plex-Token={plex.owner.token}"
    status, _ = await _json(session, "GET", url, **JSON)
    assert status == 200


async def test_pms_answers_xml_by_default(plex: FakePlex, session: aiohttp.ClientSession) -> None:
    headers = {"X-Plex-Token": plex.owner.token}
    async with session.get(f"{plex.server_url}/library/sections/2/all", headers=headers) as r:
        assert r.content_type == "application/xml"
        root = ElementTree.fromstring(await r.read())
    assert root.tag == "MediaContainer" and root.get("totalSize") == "1"
    (show,) = root.findall("Directory")  # shows are <Directory>, films <Video> (§1.4)
    assert show.get("type") == "show" and show.get("ratingKey")


async def test_sections_shape_and_per_token_visibility(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    _, body = await _json(session, "GET", f"{plex.server_url}/library/sections", **_owner(plex))
    sections = body["MediaContainer"]["Directory"]
    assert [s["key"] for s in sections] == ["1", "2", "3"]  # keys are strings
    movies = sections[0]
    assert movies["type"] == "movie" and movies["refreshing"] is False and movies["hidden"] == 0
    assert movies["Location"] == [{"id": 1, "path": "/data/movies"}]
    assert isinstance(movies["updatedAt"], int)
    friend = plex.tv.add_friend("bob", sections=[2])
    friend_headers = {**JSON, "X-Plex-Token": plex.tv.server_token(friend) or ""}
    _, body = await _json(session, "GET", f"{plex.server_url}/library/sections", **friend_headers)
    assert [s["key"] for s in body["MediaContainer"]["Directory"]] == ["2"]
    status = (
        await _json(session, "GET", f"{plex.server_url}/library/sections/1/all", **friend_headers)
    )[0]
    assert status == 404


async def test_items_carry_the_real_field_types(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/sections/1/all", **_owner(plex)
    )
    container = body["MediaContainer"]
    assert container["librarySectionID"] == 1 and container["totalSize"] == 5
    movie = next(m for m in container["Metadata"] if m["title"] == "Example Movie")
    assert movie["ratingKey"] == "1001" and movie["key"] == "/library/metadata/1001"
    assert isinstance(movie["addedAt"], int) and isinstance(movie["duration"], int)
    assert isinstance(movie["rating"], float) and isinstance(movie["audienceRating"], float)
    assert movie["year"] == 2021 and movie["Genre"] == [
        {"tag": "Science Fiction"},
        {"tag": "Drama"},
    ]
    part = movie["Media"][0]["Part"][0]
    assert (
        movie["Media"][0]["optimizedForStreaming"] == 0 and part["optimizedForStreaming"] is False
    )
    assert part["file"].startswith("/data/movies/Example Movie (2021)/")
    assert "viewCount" in movie  # watched once; unwatched items leave it out
    unwatched = next(m for m in container["Metadata"] if m["title"] == "Another Movie")
    assert "viewCount" not in unwatched


@pytest.mark.parametrize("where", ["header", "query"])
async def test_paging_by_header_or_query(
    plex: FakePlex, session: aiohttp.ClientSession, where: str
) -> None:
    plex.server.generate_library(4, 120)
    paging = {"X-Plex-Container-Start": "100", "X-Plex-Container-Size": "50"}
    url = f"{plex.server_url}/library/sections/4/all"
    headers = _owner(plex)
    if where == "header":
        headers.update(paging)
    else:
        url += "?X-Plex-Container-Start=100&X-Plex-Container-Size=50"
    async with session.get(url, headers=headers) as response:
        body = await response.json()
        assert response.headers["X-Plex-Container-Start"] == "100"
        assert response.headers["X-Plex-Container-Total-Size"] == "120"
    container = body["MediaContainer"]
    assert (container["offset"], container["size"], container["totalSize"]) == (100, 20, 120)
    assert len(container["Metadata"]) == 20


async def test_size_zero_answers_the_total_only(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    headers = {**_owner(plex), "X-Plex-Container-Start": "0", "X-Plex-Container-Size": "0"}
    _, body = await _json(session, "GET", f"{plex.server_url}/library/sections/1/all", **headers)
    assert body["MediaContainer"]["size"] == 0 and body["MediaContainer"]["totalSize"] == 5
    assert "Metadata" not in body["MediaContainer"]


async def test_sort_and_filters(plex: FakePlex, session: aiohttp.ClientSession) -> None:
    base = f"{plex.server_url}/library/sections/1/all"

    async def titles(query: str) -> list[str]:
        status, body = await _json(session, "GET", f"{base}?{query}", **_owner(plex))
        assert status == 200
        return [m["title"] for m in body["MediaContainer"].get("Metadata", [])]

    assert (await titles("sort=titleSort"))[0] == "Animated Tale"
    assert (await titles("sort=addedAt%3Adesc"))[0] == "Documentary Of Things"
    assert (await titles("sort=year:desc"))[0] == "Example Movie"
    assert (await titles("sort=rating:desc"))[0] == "The Third Film"
    assert "Example Movie" not in await titles("unwatched=1")
    drama = plex.server.tag_id("Drama")
    assert sorted(await titles(f"genre={drama}")) == ["Example Movie", "The Third Film"]
    assert await titles("decade=1990") == ["Animated Tale"]
    assert await titles("year=2019&whatever=ignored") == ["Another Movie"]
    status, _ = await _json(session, "GET", f"{base}?sort=bogus", **_owner(plex))
    assert status == 400


async def test_metadata_detail_and_show_children(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/metadata/1001", **_owner(plex)
    )
    (movie,) = body["MediaContainer"]["Metadata"]
    assert movie["Role"][0] == {
        "id": plex.server.tag_id("Actor One"),
        "filter": f"actor={plex.server.tag_id('Actor One')}",
        "tag": "Actor One",
        "role": "Hero",
        "thumb": movie["Role"][0]["thumb"],
    }
    assert {"id": "tmdb://1"} in movie["Guid"] and movie["librarySectionID"] == 1
    assert movie["Collection"] == [{"tag": "Favourites"}]
    show = plex.server.sections[2].items[0]
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/metadata/{show.rating_key}", **_owner(plex)
    )
    (show_json,) = body["MediaContainer"]["Metadata"]
    assert show_json["key"].endswith("/children") and show_json["leafCount"] == 6
    assert show_json["viewedLeafCount"] == 3 and show_json["childCount"] == 2
    _, body = await _json(
        session,
        "GET",
        f"{plex.server_url}/library/metadata/{show.rating_key}/children",
        **_owner(plex),
    )
    seasons = body["MediaContainer"]["Metadata"]
    assert [s["title"] for s in seasons] == ["Season 1", "Season 2"]
    assert seasons[0]["type"] == "season" and seasons[0]["parentRatingKey"] == str(show.rating_key)
    _, body = await _json(
        session,
        "GET",
        f"{plex.server_url}/library/metadata/{seasons[1]['ratingKey']}/children",
        **_owner(plex),
    )
    episodes = body["MediaContainer"]["Metadata"]
    assert [(e["parentIndex"], e["index"]) for e in episodes] == [(2, 1), (2, 2), (2, 3)]
    assert episodes[0]["grandparentTitle"] == "Example Show"
    status, _ = await _json(
        session, "GET", f"{plex.server_url}/library/metadata/999999", **_owner(plex)
    )
    assert status == 404


async def test_hub_search(plex: FakePlex, session: aiohttp.ClientSession) -> None:
    _, body = await _json(
        session, "GET", f"{plex.server_url}/hubs/search?query=example", **_owner(plex)
    )
    hubs = {hub["hubIdentifier"]: hub for hub in body["MediaContainer"]["Hub"]}
    assert hubs["movie"]["Metadata"][0]["title"] == "Example Movie"
    assert hubs["movie"]["Metadata"][0]["librarySectionID"] == 1
    assert hubs["show"]["size"] == 1
    assert hubs["actor"]["size"] == 0 and "Metadata" not in hubs["actor"]  # empty hubs stay
    _, body = await _json(
        session, "GET", f"{plex.server_url}/hubs/search?query=actor%20one", **_owner(plex)
    )
    actors = next(h for h in body["MediaContainer"]["Hub"] if h["type"] == "actor")
    assert actors["Directory"][0]["tag"] == "Actor One" and actors["Directory"][0]["tagType"] == 6
    status = (await _json(session, "GET", f"{plex.server_url}/hubs/search", **_owner(plex)))[0]
    assert status == 400


async def test_recently_added_is_newest_first_with_seasons_for_tv(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/recentlyAdded", **_owner(plex)
    )
    items = body["MediaContainer"]["Metadata"]
    assert items[0]["type"] == "season" and items[0]["parentTitle"] == "Example Show"
    assert [i["addedAt"] for i in items] == sorted((i["addedAt"] for i in items), reverse=True)
    assert all("librarySectionID" in i for i in items)
    plex.server.add_item(1, "Brand New", "/data/movies/Brand New (2026)/Brand New (2026).mkv")
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/sections/1/recentlyAdded", **_owner(plex)
    )
    assert body["MediaContainer"]["Metadata"][0]["title"] == "Brand New"


async def test_collections_create_add_and_list(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    mid = plex.server.machine_identifier
    uri = f"server://{mid}/com.plexapp.plugins.library/library/metadata/1002,1003"
    params = {"uri": uri, "type": "1", "title": "Picks", "smart": "0", "sectionId": "1"}
    url = f"{plex.server_url}/library/collections"
    async with session.post(url, params=params, headers=_owner(plex)) as response:
        assert response.status == 200
        (created,) = (await response.json())["MediaContainer"]["Metadata"]
    assert created["type"] == "collection" and created["subtype"] == "movie"
    assert created["smart"] is False and created["childCount"] == 2
    assert created["key"] == f"/library/collections/{created['ratingKey']}/children"
    items_url = f"{url}/{created['ratingKey']}/items"
    add = {"uri": f"server://{mid}/com.plexapp.plugins.library/library/metadata/1001"}
    async with session.put(items_url, params=add, headers=_owner(plex)) as response:
        assert response.status == 200
    _, body = await _json(session, "GET", f"{url}/{created['ratingKey']}/children", **_owner(plex))
    assert [m["ratingKey"] for m in body["MediaContainer"]["Metadata"]] == ["1002", "1003", "1001"]
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/sections/1/collections", **_owner(plex)
    )
    assert sorted(c["title"] for c in body["MediaContainer"]["Metadata"]) == ["Favourites", "Picks"]
    wrong = {**params, "uri": uri.replace(mid, "another-server")}
    async with session.post(url, params=wrong, headers=_owner(plex)) as response:
        assert response.status == 400
    friend = plex.tv.add_friend("bob")
    friend_headers = {**JSON, "X-Plex-Token": plex.tv.server_token(friend) or ""}
    async with session.post(url, params=params, headers=friend_headers) as response:
        assert response.status == 401  # only the owner changes the library


@pytest.mark.parametrize("method", ["GET", "POST"])
async def test_refresh_answers_empty_200_and_is_recorded(
    plex: FakePlex, session: aiohttp.ClientSession, method: str
) -> None:
    url = f"{plex.server_url}/library/sections/3/refresh"
    params = {"path": "/data/youtube/Kids Songs"}
    async with session.request(method, url, params=params, headers=_owner(plex)) as response:
        assert response.status == 200 and await response.read() == b""
    await plex.server.wait_for_refresh(1)
    (call,) = plex.server.refresh_calls
    assert (call.section_key, call.path, call.method) == ("3", "/data/youtube/Kids Songs", method)


async def test_transcode_returns_a_real_jpeg_of_the_asked_size(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    url = f"{plex.server_url}/photo/:/transcode"
    params = {"url": "/library/metadata/1001/thumb/1736500000", "width": "200", "height": "300"}
    async with session.get(url, params=params, headers=_owner(plex)) as response:
        assert response.status == 200 and response.content_type == "image/jpeg"
        assert jpeg_size(await response.read()) == (200, 300)
    unknown = {**params, "url": "/etc/passwd"}
    async with session.get(url, params=unknown, headers=_owner(plex)) as response:
        assert response.status == 404
    async with session.get(url, params={"url": params["url"]}, headers=_owner(plex)) as response:
        assert response.status == 400


def test_generated_jpeg_is_a_baseline_jpeg() -> None:
    data = jpeg(13, 7)
    assert data[:3] == b"\xff\xd8\xff" and data.endswith(b"\xff\xd9")
    assert jpeg_size(data) == (13, 7)


async def test_sessions_for_the_owner_only(plex: FakePlex, session: aiohttp.ClientSession) -> None:
    plex.server.add_session(1001, "bob", transcode=True)
    _, body = await _json(session, "GET", f"{plex.server_url}/status/sessions", **_owner(plex))
    (stream,) = body["MediaContainer"]["Metadata"]
    assert body["MediaContainer"]["size"] == 1
    assert stream["User"]["title"] == "bob" and stream["Player"]["state"] == "playing"
    assert stream["TranscodeSession"]["videoDecision"] == "transcode"
    friend = plex.tv.add_friend("bob")
    friend_headers = {**JSON, "X-Plex-Token": plex.tv.server_token(friend) or ""}
    status = (await _json(session, "GET", f"{plex.server_url}/status/sessions", **friend_headers))[
        0
    ]
    assert status == 401


async def test_switches_down_fail_next_and_pause(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    url = f"{plex.server_url}/identity"
    plex.server.fail_next(500)
    async with session.get(url, headers=JSON) as response:
        assert response.status == 500
    async with session.get(url, headers=JSON) as response:
        assert response.status == 200
    plex.server.down = True
    async with session.get(url, headers=JSON) as response:
        assert response.status == 503
    plex.server.down = False
    plex.server.pause()
    held = asyncio.ensure_future(session.get(url, headers=JSON))
    await plex.server.wait_for_requests("/identity", 4)
    assert not held.done()
    plex.server.resume()
    response = await held
    assert response.status == 200
    response.release()
    assert plex.server.requests["/identity"] == 4


def test_a_library_of_20000_films_is_quick_to_make() -> None:
    server = FakePlexServer(sample=False)
    started = time.perf_counter()
    server.generate_library(1, 20_000)
    assert time.perf_counter() - started < 3  # a fraction of that on a laptop
    assert len(server.sections[1].items) == 20_000
    assert len({item.title for item in server.sections[1].items}) == 20_000


# -- field by field against the reference (issue 11, item 5) -----------------------------------

SEASON_PARENT_FIELDS = {"parentTitle", "parentRatingKey", "parentKey", "parentThumb", "index"}
EPISODE_PARENT_FIELDS = {
    "grandparentTitle",
    "grandparentRatingKey",
    "grandparentKey",
    "grandparentThumb",
    "grandparentArt",
    "grandparentGuid",
    "parentTitle",
    "parentIndex",
    "parentRatingKey",
    "parentKey",
    "parentThumb",
    "parentYear",
    "index",
}


async def test_seasons_and_episodes_carry_their_parents_fields(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """§1.5: an episode carries grandparent{Title,RatingKey,Key,Thumb,Art,Guid}, parent{Title,
    Index,RatingKey,Key,Thumb,Year} and index; a season (spec, /children) its show's title,
    key, thumb, year and art."""
    show = plex.server.sections[2].items[0]
    base = f"{plex.server_url}/library/metadata"
    _, body = await _json(session, "GET", f"{base}/{show.rating_key}/children", **_owner(plex))
    season = body["MediaContainer"]["Metadata"][0]
    assert SEASON_PARENT_FIELDS | {"parentYear"} <= set(season)
    assert season["parentTitle"] == "Example Show" and season["parentYear"] == 2020
    assert season["parentKey"] == f"/library/metadata/{show.rating_key}"
    assert season["art"] == f"/library/metadata/{show.rating_key}/art/{show.updated_at}"
    _, body = await _json(session, "GET", f"{base}/{season['ratingKey']}/children", **_owner(plex))
    listed = body["MediaContainer"]["Metadata"][0]
    rating_key = listed["ratingKey"]
    _, body = await _json(session, "GET", f"{base}/{rating_key}", **_owner(plex))
    (detail,) = body["MediaContainer"]["Metadata"]
    for episode in (listed, detail):
        assert set(episode) >= EPISODE_PARENT_FIELDS, EPISODE_PARENT_FIELDS - set(episode)
        assert (episode["grandparentTitle"], episode["parentTitle"]) == ("Example Show", "Season 1")
        assert (episode["parentIndex"], episode["index"], episode["parentYear"]) == (1, 1, 2020)
        assert isinstance(episode["parentRatingKey"], str)
        assert isinstance(episode["grandparentRatingKey"], str)
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/recentlyAdded", **_owner(plex)
    )
    recent = body["MediaContainer"]["Metadata"][0]
    assert recent["type"] == "season" and set(recent) >= SEASON_PARENT_FIELDS


async def test_show_children_have_an_all_episodes_directory_beside_the_seasons(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """Spec, /library/metadata/{ratingKey}/children of a show: seasons in `Metadata`, and an
    "All episodes" entry (`key` .../allLeaves, leafCount) in `Directory`; the container names
    the show (parentTitle, parentYear)."""
    show = plex.server.sections[2].items[0]
    url = f"{plex.server_url}/library/metadata/{show.rating_key}/children"
    _, body = await _json(session, "GET", url, **_owner(plex))
    container = body["MediaContainer"]
    assert container["Directory"] == [
        {
            "leafCount": 6,
            "thumb": f"/library/metadata/{show.rating_key}/thumb/{show.updated_at}",
            "viewedLeafCount": 3,
            "key": f"/library/metadata/{show.rating_key}/allLeaves",
            "title": "All episodes",
        }
    ]
    assert [s["type"] for s in container["Metadata"]] == ["season", "season"]
    assert (container["parentTitle"], container["parentYear"]) == ("Example Show", 2020)
    assert container["viewGroup"] == "season" and container["key"] == str(show.rating_key)
    async with session.get(url, headers={"X-Plex-Token": plex.owner.token}) as response:
        root = ElementTree.fromstring(await response.read())
    # in XML both are <Directory>: the seasons have a type, "All episodes" has none
    assert [d.get("type") for d in root.findall("Directory")] == [None, "season", "season"]


async def test_sessions_send_the_library_id_as_a_string(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """Spec, /status/sessions: unlike library listings, a stream's `librarySectionID` and
    `Media[].id` are strings; `User.id` a string, `Player.userID` a number, and the Player
    says whether it is local, relayed, secure."""
    plex.server.add_session(1001, "bob")
    _, body = await _json(session, "GET", f"{plex.server_url}/status/sessions", **_owner(plex))
    (stream,) = body["MediaContainer"]["Metadata"]
    assert stream["librarySectionID"] == "1"
    assert stream["librarySectionKey"] == "/library/sections/1"
    assert stream["Media"][0]["id"] == str(plex.server.items[1001].rating_key * 10)
    assert stream["User"]["id"] == "1" and stream["Player"]["userID"] == 1
    player = stream["Player"]
    assert {"local", "relayed", "secure", "remotePublicAddress", "machineIdentifier"} <= set(player)
    assert stream["Session"]["location"] == "lan"
    assert isinstance(stream["Session"]["bandwidth"], int)


def _names(words: str) -> list[str]:
    return words.split()


async def test_server_root_lists_every_capability_of_the_reference(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """§1.5 `GET /`: the attributes of the server's capabilities, with their JSON types."""
    _, body = await _json(session, "GET", f"{plex.server_url}/", **_owner(plex))
    root = body["MediaContainer"]
    booleans = _names(
        "allowCameraUpload allowChannelAccess allowMediaDeletion allowSharing allowSync "
        "allowTuners backgroundProcessing certificate companionProxy eventStream hubSearch "
        "itemClusters mediaProviders multiuser myPlex myPlexSubscription photoAutoTag pluginHost "
        "pushNotifications readOnlyLibraries sync transcoderAudio transcoderLyrics "
        "transcoderPhoto transcoderSubtitles transcoderVideo updater voiceSearch"
    )
    numbers = _names(
        "size livetv musicAnalysis offlineTranscode streamingBrainABRVersion "
        "streamingBrainVersion transcoderActiveVideoSessions updatedAt"
    )
    strings = _names(
        "countryCode diagnostics friendlyName machineIdentifier myPlexMappingState "
        "myPlexSigninState myPlexUsername ownerFeatures platform platformVersion "
        "transcoderVideoBitrates transcoderVideoQualities transcoderVideoResolutions version"
    )
    assert set(root) == {*booleans, *numbers, *strings, "Directory"}
    assert all(isinstance(root[k], bool) for k in booleans)
    assert all(isinstance(root[k], int) and not isinstance(root[k], bool) for k in numbers)
    assert all(isinstance(root[k], str) for k in strings)
    assert root["machineIdentifier"] == plex.server.machine_identifier
    assert root["myPlexUsername"] == plex.owner.username


async def test_user_profile_has_every_field_the_spec_requires(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """Spec, plex.tv /user: `profile` requires watchedIndicator and mediaReviewsVisibility
    besides the six fields of the reference's example (§1.2)."""
    headers = {**TV_HEADERS, "X-Plex-Token": plex.owner.token}
    _, user = await _json(session, "GET", f"{plex.tv_url}/api/v2/user", **headers)
    assert set(user["profile"]) == {
        "autoSelectAudio",
        "defaultAudioLanguage",
        "defaultSubtitleLanguage",
        "autoSelectSubtitle",
        "defaultSubtitleAccessibility",
        "defaultSubtitleForced",
        "watchedIndicator",
        "mediaReviewsVisibility",
    }
    profile = user["profile"]
    assert profile["autoSelectAudio"] is True and isinstance(profile["defaultAudioLanguage"], str)
    assert all(
        isinstance(profile[k], int) and not isinstance(profile[k], bool)
        for k in ("autoSelectSubtitle", "watchedIndicator", "mediaReviewsVisibility")
    )


@pytest.mark.parametrize(
    ("url", "query", "size"),
    [
        # a poster is 2:3; minSize=1 resizes its smaller side (the width) to the asked one
        ("/library/metadata/1001/thumb/1", "width=300&height=300&minSize=1&upscale=1", (300, 450)),
        # minSize=0 fits the image inside the box
        ("/library/metadata/1001/thumb/1", "width=300&height=300&minSize=0&upscale=1", (200, 300)),
        # upscale=0 never goes above the image's own size
        ("/library/metadata/1001/thumb/1", "width=3000&height=4500&upscale=0", (1000, 1500)),
        ("/library/metadata/1001/art/1", "width=640&height=640&minSize=1&upscale=1", (1138, 640)),
    ],
)
async def test_transcode_keeps_the_image_proportions(
    plex: FakePlex,
    session: aiohttp.ClientSession,
    url: str,
    query: str,
    size: tuple[int, int],
) -> None:
    """Spec, /photo/:/transcode: "images are always scaled proportionally"; minSize=1 "will
    make the smaller native dimension the dimension resized against"; upscale=0 does not
    "resize beyond native dimensions"."""
    full = f"{plex.server_url}/photo/:/transcode?url={url}&{query}"
    async with session.get(full, headers=_owner(plex)) as response:
        assert response.status == 200 and response.content_type == "image/jpeg"
        assert jpeg_size(await response.read()) == size


async def test_collection_lists_carry_the_reference_fields(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """§1.5 Collections, List: collectionMode, collectionSort, collectionPublished on every
    collection, and `content` (the filter URI) on smart ones only."""
    mid = plex.server.machine_identifier
    uri = f"server://{mid}/com.plexapp.plugins.library/library/sections/1/all?type=1&unwatched=1"
    params = {"uri": uri, "type": "1", "title": "Unwatched", "smart": "1", "sectionId": "1"}
    url = f"{plex.server_url}/library/collections"
    async with session.post(url, params=params, headers=_owner(plex)) as response:
        assert response.status == 200
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/sections/1/collections", **_owner(plex)
    )
    collections = {c["title"]: c for c in body["MediaContainer"]["Metadata"]}
    for collection in collections.values():
        assert {"collectionMode", "collectionSort", "collectionPublished"} <= set(collection)
        assert collection["librarySectionID"] == 1 and collection["guid"].startswith(
            "collection://"
        )
    assert collections["Unwatched"]["smart"] is True and collections["Unwatched"]["content"] == uri
    assert collections["Favourites"]["smart"] is False
    assert "content" not in collections["Favourites"]


async def test_recently_added_items_name_their_library(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """§1.5 and spec, /library/recentlyAdded: items carry librarySectionID (a number),
    librarySectionTitle, librarySectionKey and librarySectionUUID."""
    _, body = await _json(
        session, "GET", f"{plex.server_url}/library/recentlyAdded", **_owner(plex)
    )
    for item in body["MediaContainer"]["Metadata"]:
        section = plex.server.sections[item["librarySectionID"]]
        assert item["librarySectionTitle"] == section.title
        assert item["librarySectionKey"] == f"/library/sections/{section.key}"
        assert item["librarySectionUUID"] == section.uuid


async def _receive_webhook(
    aiohttp_server: Any, form: aiohttp.FormData
) -> tuple[str, list[tuple[dict[str, str], bytes]]]:
    """Post `form` to a bare receiver; (request Content-Type, [(part headers, part body)])."""
    received: list[tuple[dict[str, str], bytes]] = []
    content_type: list[str] = []

    async def receive(request: web.Request) -> web.Response:
        content_type.append(request.headers["Content-Type"])
        reader = await request.multipart()
        async for part in reader:
            assert isinstance(part, aiohttp.BodyPartReader)
            received.append((dict(part.headers), await part.read()))
        return web.Response()

    app = web.Application()
    app.router.add_post("/hook", receive)
    server = await aiohttp_server(app)
    async with (
        aiohttp.ClientSession() as client,
        client.post(server.make_url("/hook"), data=form) as response,
    ):
        assert response.status == 200
    return content_type[0], received


async def test_webhooks_are_multipart_with_a_json_part_and_a_jpeg_thumb(
    plex: FakePlex, aiohttp_server: Any
) -> None:
    """§1.6: multipart/form-data; the `payload` part is JSON (sent with its own
    Content-Type: application/json), the `thumb` part a JPEG file for library.new (and
    media.play, media.rate, library.on.deck, playback.started), absent for media.stop."""
    movie = plex.server.items[1001]
    form = plex_webhook(plex.server, "library.new", account=plex.owner, item=movie)
    content_type, parts = await _receive_webhook(aiohttp_server, form)
    assert content_type.startswith("multipart/form-data; boundary=")
    (payload_headers, payload), (thumb_headers, thumb) = parts
    assert 'name="payload"' in payload_headers["Content-Disposition"]
    assert payload_headers["Content-Type"] == "application/json"
    event = json.loads(payload)
    assert (event["event"], event["user"], event["owner"]) == ("library.new", True, True)
    assert event["Server"]["uuid"] == plex.server.machine_identifier
    assert set(event["Account"]) == {"id", "thumb", "title"} and "Player" not in event
    metadata = event["Metadata"]
    assert metadata["ratingKey"] == "1001" and metadata["librarySectionID"] == 1
    assert metadata["librarySectionType"] == "movie" and {"id": "tmdb://1"} in metadata["Guid"]
    assert 'name="thumb"' in thumb_headers["Content-Disposition"]
    assert "filename=" in thumb_headers["Content-Disposition"]
    assert thumb_headers["Content-Type"] == "image/jpeg" and thumb[:2] == b"\xff\xd8"
    form = plex_webhook(plex.server, "media.stop", account=plex.owner, item=movie)
    _, parts = await _receive_webhook(aiohttp_server, form)
    assert len(parts) == 1


async def test_playback_webhooks_carry_the_player_and_the_view_offset(plex: FakePlex) -> None:
    """§1.6: a playback event adds `Player{local,publicAddress,title,uuid}` and, on
    `Metadata`, `viewOffset` (ms) and `lastViewedAt`; an episode names its show and season."""
    episode = plex.server.sections[2].items[0].children[0].children[0]
    for event in ("media.play", "media.pause", "media.resume", "media.stop", "media.scrobble"):
        payload = webhook_payload(plex.server, event, account=plex.owner, item=episode)
        assert set(payload["Player"]) == {"local", "publicAddress", "title", "uuid"}
        metadata = payload["Metadata"]
        assert isinstance(metadata["viewOffset"], int) and isinstance(metadata["lastViewedAt"], int)
        assert set(metadata) >= EPISODE_PARENT_FIELDS
    new = webhook_payload(plex.server, "library.new", account=plex.owner, item=episode)
    assert "viewOffset" not in new["Metadata"] and "Player" not in new


async def test_search_brings_the_films_of_a_matching_person_with_a_reason(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """Spec, /hubs/search: "based on matches, it will return other related matches (e.g. ...
    for an actor match, movies with that actor)", with `reason` (the source hub's
    identifier), `reasonTitle` (e.g. the actor's name) and `reasonID` (e.g. a tag ID);
    §1.5 lists a `director` hub among the hub identifiers."""
    url = f"{plex.server_url}/hubs/search?query=jane%20doe&limit=10"
    _, body = await _json(session, "GET", url, **_owner(plex))
    hubs = {hub["hubIdentifier"]: hub for hub in body["MediaContainer"]["Hub"]}
    (director,) = hubs["director"]["Directory"]
    assert (director["tag"], director["tagType"]) == ("Jane Doe", 4)
    films = hubs["movie"]["Metadata"]
    assert len(films) == 5
    for film in films:
        assert (film["reason"], film["reasonTitle"]) == ("director", "Jane Doe")
        assert film["reasonID"] == plex.server.tag_id("Jane Doe") == director["id"]
    url = f"{plex.server_url}/hubs/search?query=example"
    _, body = await _json(session, "GET", url, **_owner(plex))
    hubs = {hub["hubIdentifier"]: hub for hub in body["MediaContainer"]["Hub"]}
    assert "reason" not in hubs["movie"]["Metadata"][0]  # a direct match needs no reason


async def test_legacy_friends_list_has_the_reference_attributes(
    plex: FakePlex, session: aiohttp.ClientSession
) -> None:
    """§1.3 (B): each `<User>` of /api/users has the sharing flags and filters of the
    reference's example, as "0"/"1" and "" strings."""
    plex.tv.add_friend("bob", sections=[1])
    headers = {**TV_HEADERS, "X-Plex-Token": plex.owner.token}
    async with session.get(f"{plex.tv_url}/api/users", headers=headers) as response:
        root = ElementTree.fromstring(await response.read())
    (user,) = root.findall("User")
    assert set(user.attrib) == {
        "id",
        "title",
        "username",
        "email",
        "recommendationsPlaylistId",
        "thumb",
        "protected",
        "home",
        "allowTuners",
        "allowSync",
        "allowCameraUpload",
        "allowChannels",
        "allowSubtitleAdmin",
        "filterAll",
        "filterMovies",
        "filterMusic",
        "filterPhotos",
        "filterTelevision",
        "restricted",
    }
    server = user.find("Server")
    assert server is not None and server.get("allLibraries") == "0"
    assert set(server.attrib) == {
        "id",
        "serverId",
        "machineIdentifier",
        "name",
        "lastSeenAt",
        "numLibraries",
        "allLibraries",
        "owned",
        "pending",
    }
