"""The fakes speak Plex's wire format (shared/reference/external-apis.md §1, checklist §6).

These drive the fakes with a plain aiohttp client, so a fake that drifted from the reference
fails here rather than letting the plugin's own tests pass against the wrong contract.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any
from xml.etree import ElementTree

import aiohttp
import pytest
from medianest_server.plugin_api import ManualClock

from medianest_plex.testing import FakePlex, FakePlexServer, jpeg, jpeg_size

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
