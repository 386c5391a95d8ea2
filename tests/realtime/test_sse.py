"""`GET /api/v1/events`: who may listen, what they hear, heartbeats, and resuming a stream."""

from __future__ import annotations

import aiohttp
import pytest

from medianest_server.appkeys import SERVICES

from .conftest import HEARTBEAT, MakeSite, Site


async def test_anonymous_callers_are_refused_on_sse_and_websocket(make_site: MakeSite) -> None:
    site = await make_site()
    response = await site.http.get(f"{site.url}/api/v1/events")
    assert response.status == 401
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await site.http.ws_connect(f"{site.url}/ws")
    assert refused.value.status == 401
    bad = await site.http.get(
        f"{site.url}/api/v1/events", headers={"Authorization": "Bearer mn_not_a_token"}
    )
    assert bad.status == 401


async def test_a_user_hears_their_own_topic_and_all_but_nothing_else(
    make_site: MakeSite, database_url: str, bus: str, request: pytest.FixtureRequest
) -> None:
    redis = request.getfixturevalue("redis_url") if bus == "redis" else ""
    site = await make_site(database_url=database_url, redis_url=redis)
    alice = await site.person("alice")
    bob = await site.person("bob")
    stream = await site.sse(alice.cookie)
    await site.publish(f"user:{bob.user.id}", 1)
    await site.publish("admins", 2)
    mine = await site.publish(f"user:{alice.user.id}", 3)
    everyone = await site.publish("all", 4)
    await site.publish(f"user:{bob.user.id}", 5)
    last = await site.publish(f"user:{alice.user.id}", 6)
    received = [await stream.event() for _ in range(3)]
    assert [e["id"] for e in received] == [mine.id, everyone.id, last.id]
    assert received[0] == mine.to_dict()  # the whole event: id, type, at, topic, data
    stream.close()


async def test_an_admin_also_hears_admins_and_a_token_works_like_a_cookie(site: Site) -> None:
    boss = await site.person("boss", role="admin")
    other = await site.person("carol")
    stream = await site.sse(boss.bearer)
    await site.publish(f"user:{other.user.id}", 1)
    admins = await site.publish("admins", 2)
    own = await site.publish(f"user:{boss.user.id}", 3)
    assert [(await stream.event())["id"] for _ in range(2)] == [admins.id, own.id]
    stream.close()


async def test_the_stream_sends_heartbeat_comments_and_stream_headers(site: Site) -> None:
    alice = await site.person("alice")
    stream = await site.sse(alice.cookie)
    headers = stream.response.headers
    assert headers["Content-Type"].startswith("text/event-stream")
    assert headers["Cache-Control"] == "no-cache"
    assert headers["X-Accel-Buffering"] == "no"
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["X-Request-ID"]
    message = await stream.message(within=HEARTBEAT * 10)
    assert message is not None and message.comment == "ping"
    stream.close()


async def test_resuming_replays_exactly_the_missed_visible_events_then_goes_live(
    site: Site,
) -> None:
    alice = await site.person("alice")
    bob = await site.person("bob")
    bus = site.app[SERVICES].events
    stream = await site.sse(alice.cookie)
    seen = await site.publish(f"user:{alice.user.id}", 1)
    assert (await stream.event())["id"] == seen.id
    stream.close()  # offline; meanwhile:
    probe = bus.subscribe()
    missed = [
        await site.publish(f"user:{alice.user.id}", 2),
        await site.publish(f"user:{bob.user.id}", 3),  # not hers
        await site.publish("admins", 4),  # not hers
        await site.publish("all", 5),
        await site.publish(f"user:{alice.user.id}", 6),
    ]
    while (event := await probe.get(timeout=5)) is not None and event.id != missed[-1].id:
        pass  # on Redis, wait until this instance has seen them (they are in its history)
    probe.close()
    visible = [missed[0], missed[3], missed[4]]

    resumed = await site.sse({**alice.cookie, "Last-Event-ID": seen.id})
    live = await site.publish("all", 7)
    assert [(await resumed.event())["id"] for _ in range(4)] == [e.id for e in [*visible, live]]
    resumed.close()

    by_query = await site.sse(alice.bearer, query=f"?last_event_id={missed[3].id}")
    after = await site.publish(f"user:{alice.user.id}", 8)
    assert [(await by_query.event())["id"] for _ in range(3)] == [missed[4].id, live.id, after.id]
    by_query.close()


async def test_resuming_while_events_are_still_arriving_loses_and_repeats_nothing(
    site: Site,
) -> None:
    alice = await site.person("alice")
    stream = await site.sse(alice.cookie)
    first = await site.publish("all", 0)
    assert (await stream.event())["id"] == first.id
    stream.close()
    sent = [await site.publish("all", n) for n in range(1, 21)]
    # reconnect while (on Redis) some of these are still on their way
    resumed = await site.sse({**alice.cookie, "Last-Event-ID": first.id})
    sent += [await site.publish("all", n) for n in range(21, 31)]
    received = [(await resumed.event())["id"] for _ in sent]
    assert received == [e.id for e in sent]
    resumed.close()


async def test_resuming_past_the_buffer_starts_with_a_reset_then_what_is_left(
    site: Site,
) -> None:
    """The page is told it missed events it cannot get back (core.stream.reset, to it alone),
    so it reloads what it shows; then the stream goes on with what the buffer holds."""
    alice = await site.person("alice")
    bus = site.app[SERVICES].events
    stream = await site.sse(alice.cookie)
    seen = await site.publish("all", 0)
    assert (await stream.event())["id"] == seen.id
    stream.close()
    size = bus._history.maxlen or 0
    probe = bus.subscribe(max_queue=size + 10)
    later = [await site.publish("all", n) for n in range(1, size + 3)]  # more than it holds
    while (event := await probe.get(timeout=5)) is not None and event.id != later[-1].id:
        pass  # on Redis, wait until this instance has seen them all
    probe.close()
    resumed = await site.sse({**alice.cookie, "Last-Event-ID": seen.id})
    reset = await resumed.event(also=("core.stream.reset",))
    assert reset["type"] == "core.stream.reset" and reset["topic"] == f"user:{alice.user.id}"
    replayed = [(await resumed.event())["id"] for _ in range(min(size, 500))]
    assert replayed == [e.id for e in later[-min(size, 500) :]]
    resumed.close()


async def test_a_malformed_last_event_id_is_a_400(site: Site) -> None:
    alice = await site.person("alice")
    response = await site.http.get(
        f"{site.url}/api/v1/events", headers={**alice.cookie, "Last-Event-ID": "no\tgood"}
    )
    assert response.status == 400
    response = await site.http.get(
        f"{site.url}/api/v1/events?last_event_id=%3Cscript%3E", headers=alice.cookie
    )
    assert response.status == 400
