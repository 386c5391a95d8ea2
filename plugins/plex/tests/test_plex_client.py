"""The plex.tv and Plex server clients, against the fakes on 127.0.0.1, through MediaNest's
HttpClient (breaker, retries, single-flight) as the plugin uses them."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC
from urllib.parse import parse_qs

import pytest
from medianest_server.plugin_api import ManualClock

from medianest_plex.client import (
    PinExpired,
    PlexClientInfo,
    PlexError,
    PlexNotFound,
    PlexServerClient,
    PlexTvClient,
    PlexUnauthorized,
    PlexUnavailable,
)
from medianest_plex.models import PlexRole
from medianest_plex.testing import FakePlex, RefreshCall, jpeg_size

# -- plex.tv -------------------------------------------------------------------------------------


async def test_sign_in_with_a_pin(
    plex: FakePlex, plex_tv: PlexTvClient, info: PlexClientInfo
) -> None:
    pin = await plex_tv.create_pin()
    assert pin.client_identifier == info.client_identifier
    assert pin.product == "MediaNest Tests"  # the name the person sees in their Plex devices
    assert pin.expires_in == 1800 and pin.expires_at is not None and not pin.approved
    url = plex_tv.auth_url(pin, forward_url="https://portal.example/plex/callback")
    assert url.startswith("https://app.plex.tv/auth#?")
    fragment = parse_qs(url.split("#?", 1)[1])
    assert fragment == {
        "clientID": [info.client_identifier],
        "code": [pin.code],
        "context[device][product]": ["MediaNest Tests"],
        "forwardUrl": ["https://portal.example/plex/callback"],
    }
    assert (await plex_tv.check_pin(pin.id)).auth_token is None
    friend = plex.tv.add_friend("bob")
    plex.tv.approve_pin(pin.id, friend)
    approved = await plex_tv.check_pin(pin.id)
    assert approved.approved and approved.auth_token == friend.token
    assert friend.token not in repr(approved)
    (created,) = [r for r in plex.tv.log if r.method == "POST"]
    assert created.query == {"strong": "true"}
    for header in ("X-Plex-Product", "X-Plex-Version", "X-Plex-Platform", "X-Plex-Device"):
        assert created.headers[header]
    assert created.headers["Accept"] == "application/json"


async def test_an_expired_pin_says_so(
    plex: FakePlex, plex_tv: PlexTvClient, clock: ManualClock
) -> None:
    pin = await plex_tv.create_pin()
    clock.advance(1801)
    with pytest.raises(PinExpired) as caught:
        await plex_tv.check_pin(pin.id)
    assert caught.value.status == 404 and "expired" in caught.value.message


async def test_user_and_a_token_plex_tv_no_longer_accepts(
    plex: FakePlex, plex_tv: PlexTvClient
) -> None:
    user = await plex_tv.user(plex.owner.token)
    assert (user.id, user.uuid, user.username) == (plex.owner.id, plex.owner.uuid, "owner")
    assert user.email == plex.owner.email and user.thumb == plex.owner.thumb
    assert plex.owner.token not in repr(user)
    plex.tv.revoke(plex.owner)
    with pytest.raises(PlexUnauthorized) as caught:
        await plex_tv.user(plex.owner.token)
    assert caught.value.status == 401 and caught.value.upstream == "plex.tv"
    assert plex.owner.token not in str(caught.value) + repr(caught.value.details)


async def test_who_can_reach_the_server(plex: FakePlex, plex_tv: PlexTvClient) -> None:
    friend = plex.tv.add_friend("bob", sections=[1])
    stranger = plex.tv.add_stranger("eve")
    machine = plex.server.machine_identifier
    owner = await plex_tv.server_access(plex.owner.token, machine)
    assert owner is not None and owner.owned and owner.owner_id is None
    assert owner.access_token == plex.owner.token
    assert owner.connections[0].uri == plex.server_url
    shared = await plex_tv.server_access(friend.token, machine)
    assert shared is not None and not shared.owned and shared.owner_id == plex.owner.id
    assert shared.access_token == plex.tv.server_token(friend) != friend.token
    assert shared.access_token is not None and shared.access_token not in repr(shared)
    assert await plex_tv.server_access(stranger.token, machine) is None
    devices = await plex_tv.resources(stranger.token)
    assert devices and not any(device.is_server for device in devices)


async def test_plex_tv_down_is_unavailable_not_a_crash(
    plex: FakePlex, plex_tv: PlexTvClient
) -> None:
    await plex.stop_tv()
    with pytest.raises(PlexUnavailable) as caught:
        await plex_tv.create_pin()
    assert caught.value.status == 503 and caught.value.upstream == "plex.tv"
    # plain words for people, the cause for admins and the log
    assert caught.value.message == "plex.tv is not answering right now."
    assert "plex.tv cannot be reached" in caught.value.detail


async def test_failing_plex_tv_opens_its_circuit(
    plex: FakePlex, plex_tv: PlexTvClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    plex.tv.down = True
    for _ in range(2):  # two attempts each (one retry): the third failure opens the circuit
        with pytest.raises(PlexUnavailable) as caught:
            await plex_tv.user(plex.owner.token)
        assert caught.value.http_status == 503
    with pytest.raises(PlexUnavailable) as caught:
        await plex_tv.user(plex.owner.token)
    assert caught.value.retry_after_seconds == 30
    assert plex.tv.requests["/api/v2/user"] == 3  # the open circuit kept the last call home
    assert plex.owner.token not in caplog.text


async def test_an_unexpected_answer_is_a_plex_error(plex: FakePlex, plex_tv: PlexTvClient) -> None:
    plex.tv.fail_next(400)
    with pytest.raises(PlexError) as caught:
        await plex_tv.create_pin()
    assert type(caught.value) is PlexError and caught.value.http_status == 400


# -- Plex Media Server -------------------------------------------------------------------------


async def test_identity_and_server_info(plex: FakePlex, server: PlexServerClient) -> None:
    identity = await server.identity()
    assert identity.machine_identifier == plex.server.machine_identifier
    assert identity.version == "1.41.3.9314-a0bfb8370" and identity.claimed
    assert "X-Plex-Token" not in plex.server.log[-1].headers  # /identity needs none
    info = await server.server_info()
    assert (info.friendly_name, info.owner_username) == ("HomeServer", "owner")
    assert await server.machine_identifier() == identity.machine_identifier


async def test_each_token_sees_what_is_shared_with_it(
    plex: FakePlex, server: PlexServerClient
) -> None:
    sections = await server.sections()
    assert [(s.key, s.title, s.type) for s in sections] == [
        ("1", "Movies", "movie"),
        ("2", "TV Shows", "show"),
        ("3", "YouTube", "movie"),
    ]
    assert sections[0].locations == ("/data/movies",) and sections[0].updated_at is not None
    friend = plex.tv.add_friend("bob", sections=[2])
    token = plex.tv.server_token(friend)
    assert token is not None
    as_friend = server.for_token(token)
    assert [s.key for s in await as_friend.sections()] == ["2"]
    with pytest.raises(PlexNotFound):
        await as_friend.browse("1")


async def test_browse_pages_through_20000_films(plex: FakePlex, server: PlexServerClient) -> None:
    plex.server.generate_library(4, 20_000)
    first = await server.browse("4", start=0, size=50, sort="titleSort")
    assert (first.offset, first.size, first.total_size) == (0, 50, 20_000)
    second = await server.browse("4", start=50, size=50, sort="titleSort")
    assert not {i.rating_key for i in first.items} & {i.rating_key for i in second.items}
    assert [i.title_sort for i in first.items + second.items] == sorted(
        (i.title_sort or "" for i in first.items + second.items), key=str.lower
    )
    last = await server.browse("4", start=19_990, size=50, sort="titleSort")
    assert (last.offset, last.size, last.total_size) == (19_990, 10, 20_000)
    assert await server.count("4") == 20_000
    paged = [r for r in plex.server.log if r.path == "/library/sections/4/all"]
    assert paged[2].headers["X-Plex-Container-Start"] == "19990"
    assert paged[2].headers["X-Plex-Container-Size"] == "50"


async def test_sort_and_filters(plex: FakePlex, server: PlexServerClient) -> None:
    async def titles(
        sort: str | None = None, filters: dict[str, str | int] | None = None
    ) -> list[str]:
        page = await server.browse("1", sort=sort, filters=filters)
        return [item.title for item in page.items]

    assert (await titles(sort="addedAt:desc"))[0] == "Documentary Of Things"
    assert (await titles(sort="rating:desc"))[0] == "The Third Film"
    assert (await titles(sort="audienceRating:desc"))[0] == "The Third Film"
    assert (await titles(sort="year"))[0] == "Animated Tale"
    assert "Example Movie" not in await titles(filters={"unwatched": 1})
    genres = {title: key for key, title in await server.filter_values("1", "genre")}
    assert sorted(await titles(filters={"genre": genres["Drama"]})) == [
        "Example Movie",
        "The Third Film",
    ]
    assert await titles(filters={"decade": 1990}) == ["Animated Tale"]
    assert await titles(filters={"year": 2019}) == ["Another Movie"]
    with pytest.raises(PlexError):
        await server.browse("1", sort="nonsense")


async def test_movie_detail(plex: FakePlex, server: PlexServerClient) -> None:
    movie = await server.metadata("1001")
    assert (movie.title, movie.year, movie.type) == ("Example Movie", 2021, "movie")
    assert movie.summary == "A summary of Example Movie." and movie.duration_ms == 6_989_056
    assert movie.rating == 7.9 and movie.audience_rating == 8.4
    assert movie.genres == ("Science Fiction", "Drama") and movie.directors == ("Jane Doe",)
    assert movie.cast[0] == PlexRole(
        tag="Actor One",
        role="Hero",
        thumb=movie.cast[0].thumb,
        id=plex.server.tag_id("Actor One"),
    )
    assert "tmdb://1" in movie.guids and movie.collections == ("Favourites",)
    assert movie.files[0].startswith("/data/movies/Example Movie (2021)/")
    assert movie.added_at is not None and movie.added_at.tzinfo is UTC
    assert movie.watched and movie.section_id == 1
    with pytest.raises(PlexNotFound):
        await server.metadata("999999")
    with pytest.raises(ValueError):
        await server.metadata("../../status/sessions")


async def test_show_seasons_and_episodes(server: PlexServerClient) -> None:
    (show,) = (await server.browse("2")).items
    assert (show.type, show.leaf_count, show.viewed_leaf_count, show.child_count) == (
        "show",
        6,
        3,
        2,
    )
    assert not show.watched
    seasons = await server.children(show.rating_key)
    assert [s.title for s in seasons.items] == ["Season 1", "Season 2"]
    assert seasons.items[0].watched and not seasons.items[1].watched
    episodes = await server.children(seasons.items[0].rating_key)
    assert [(e.parent_index, e.index) for e in episodes.items] == [(1, 1), (1, 2), (1, 3)]
    assert episodes.items[0].grandparent_title == "Example Show"
    assert episodes.items[0].type == "episode" and episodes.items[0].files


async def test_search_across_and_within_libraries(plex: FakePlex, server: PlexServerClient) -> None:
    hubs = {hub.hub_identifier: hub for hub in await server.search("example")}
    assert [i.title for i in hubs["movie"].items] == ["Example Movie"]
    assert hubs["movie"].items[0].section_id == 1
    assert [i.title for i in hubs["show"].items] == ["Example Show"]
    in_tv = {hub.hub_identifier: hub for hub in await server.search("example", section=2)}
    assert in_tv["movie"].items == () and len(in_tv["show"].items) == 1
    actors = {hub.hub_identifier: hub for hub in await server.search("actor one")}
    assert [t.tag for t in actors["actor"].tags] == ["Actor One"]
    nothing_shared = plex.tv.add_friend("bob", sections=[])
    token = plex.tv.server_token(nothing_shared)
    assert token is not None
    assert await server.for_token(token).search("example") == []


async def test_recently_added_all_and_per_library(plex: FakePlex, server: PlexServerClient) -> None:
    added = plex.server.add_item(3, "Kids Song", "/data/youtube/Kids/Kids Song.mp4")
    everything = await server.recently_added(size=3)
    assert everything.items[0].rating_key == str(added.rating_key)
    assert everything.items[0].section_title == "YouTube"
    assert (everything.size, everything.total_size) == (3, 8)
    tv = await server.recently_added("2")
    assert tv.items[0].type == "season" and tv.items[0].parent_title == "Example Show"


async def test_collections_list_create_and_add(plex: FakePlex, server: PlexServerClient) -> None:
    (favourites,) = await server.collections("1")
    assert (favourites.title, favourites.child_count, favourites.smart) == ("Favourites", 1, False)
    created = await server.create_collection("1", "Kids Playlist", ["1002", "1003"])
    assert (created.type, created.subtype, created.child_count) == ("collection", "movie", 2)
    await server.add_to_collection(created.rating_key, ["1004"])
    members = await server.collection_items(created.rating_key)
    assert [m.rating_key for m in members.items] == ["1002", "1003", "1004"]
    assert (await server.collection(created.rating_key)).child_count == 3
    (post,) = [r for r in plex.server.log if r.method == "POST"]
    machine = plex.server.machine_identifier
    assert post.query == {
        "uri": f"server://{machine}/com.plexapp.plugins.library/library/metadata/1002,1003",
        "type": "1",
        "title": "Kids Playlist",
        "smart": "0",
        "sectionId": "1",
    }
    assert [c.title for c in plex.server.collections_named("Kids Playlist")] == ["Kids Playlist"]
    with pytest.raises(PlexNotFound):
        await server.add_to_collection("999999", ["1001"])


async def test_partial_refresh_is_one_call_with_the_path(
    plex: FakePlex, server: PlexServerClient
) -> None:
    await server.refresh_section("3", "/data/youtube/Kids Songs")
    assert plex.server.refresh_calls == [
        RefreshCall(section_key="3", path="/data/youtube/Kids Songs", force=False, method="GET")
    ]


async def test_active_streams(plex: FakePlex, server: PlexServerClient) -> None:
    plex.server.add_session(1001, "bob", transcode=True)
    (stream,) = await server.sessions()
    assert (stream.user_title, stream.item.title, stream.state) == (
        "bob",
        "Example Movie",
        "playing",
    )
    assert stream.transcoding and stream.local and stream.bandwidth_kbps == 4000


async def test_transcode_streams_a_jpeg_of_the_asked_size(
    plex: FakePlex, server: PlexServerClient
) -> None:
    async with server.transcode("/library/metadata/1001/thumb/1736400000", 240, 360) as image:
        assert image.content_type == "image/jpeg"
        data = b"".join([chunk async for chunk in image.chunks()])
    assert jpeg_size(data) == (240, 360)
    (call,) = plex.server.transcode_calls
    assert call.url == "/library/metadata/1001/thumb/1736400000" and not call.token_in_query
    with pytest.raises(ValueError):
        async with server.transcode("http://elsewhere.example/a.jpg", 10, 10):
            pass
    with pytest.raises(PlexNotFound):
        async with server.transcode("/library/metadata/999999/thumb/1", 10, 10):
            pass
    assert len(plex.server.transcode_calls) == 2  # the foreign URL never left MediaNest


async def test_a_refused_server_token_is_plex_unauthorized(server: PlexServerClient) -> None:
    with pytest.raises(PlexUnauthorized) as caught:
        await server.for_token("stale-token").sections()
    assert caught.value.status == 401 and "stale-token" not in caught.value.message


async def test_plex_down_is_plex_unavailable(plex: FakePlex, server: PlexServerClient) -> None:
    await plex.stop_server()
    with pytest.raises(PlexUnavailable) as caught:
        await server.identity()
    assert caught.value.upstream == "Plex" and caught.value.status == 503


async def test_identical_concurrent_pages_make_one_request(
    plex: FakePlex, server: PlexServerClient
) -> None:
    plex.server.generate_library(4, 2_000)
    plex.server.pause()
    calls = [asyncio.ensure_future(server.browse("4", start=0, size=50)) for _ in range(50)]
    await plex.server.wait_for_requests("/library/sections/4/all")
    plex.server.resume()
    pages = await asyncio.gather(*calls)
    assert {page.items[0].rating_key for page in pages} == {pages[0].items[0].rating_key}
    assert plex.server.requests["/library/sections/4/all"] == 1


async def test_tokens_travel_in_headers_never_in_urls(
    plex: FakePlex, plex_tv: PlexTvClient, server: PlexServerClient
) -> None:
    await plex_tv.user(plex.owner.token)
    await plex_tv.resources(plex.owner.token)
    await server.sections()
    await server.browse("1")
    await server.refresh_section("1", "/data/movies/x")
    async with server.transcode("/library/metadata/1001/thumb/1", 10, 10) as image:
        async for _ in image.chunks():
            pass
    for request in plex.tv.log + plex.server.log:
        assert "X-Plex-Token" not in request.query
        assert plex.owner.token not in str(request.query)
    assert all(r.headers.get("X-Plex-Token") == plex.owner.token for r in plex.server.log)
