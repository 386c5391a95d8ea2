"""Connections end when their sign-in ends or the server stops; events cross instances on Redis."""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path

from aiohttp import WSCloseCode

from medianest_server.appkeys import SERVICES
from medianest_server.events import make_event
from medianest_server.web import realtime

from .conftest import HEARTBEAT, WAIT, MakeSite, Site

PASSWORD = "erin's password 0003"


async def test_a_revoked_session_ends_its_stream_and_socket_at_the_next_check(
    site: Site,
) -> None:
    alice = await site.person("alice")
    stream = await site.sse(alice.cookie)
    socket = await site.ws(alice.cookie)
    other_device = await site.ws(alice.bearer)  # a different credential: stays
    await site.auth.sessions.revoke(alice.session_id)
    assert await stream.ended(within=HEARTBEAT * 10)
    assert await socket.closed(within=HEARTBEAT * 10) == realtime.WS_SESSION_ENDED
    event = await site.publish("all", 1)
    assert (await other_device.event())["id"] == event.id
    reconnect = await site.http.get(f"{site.url}/api/v1/events", headers=alice.cookie)
    assert reconnect.status == 401
    await other_device.socket.close()


async def test_a_jwt_stream_ends_when_its_api_session_is_revoked(make_site: MakeSite) -> None:
    site = await make_site()
    await site.auth.users.create("erin", password=PASSWORD)
    tokens = await site.http.post(
        f"{site.url}/api/v1/auth/token", json={"username": "erin", "password": PASSWORD}
    )
    assert tokens.status == 200, await tokens.text()
    body = await tokens.json()
    headers = {"Authorization": f"Bearer {body['access_token']}"}
    stream = await site.sse(headers)
    socket = await site.ws(headers)
    claims = body["access_token"].split(".")[1]
    session_id = json.loads(base64.urlsafe_b64decode(claims + "=" * (-len(claims) % 4)))["sid"]
    await site.auth.sessions.revoke(session_id)
    assert await stream.ended(within=HEARTBEAT * 10)
    assert await socket.closed(within=HEARTBEAT * 10) == realtime.WS_SESSION_ENDED


async def test_a_change_ends_the_connections_at_once_not_at_the_next_heartbeat(
    make_site: MakeSite,
) -> None:
    """core.user.changed (the revoke's own event) re-checks a connection as it passes: with a
    heartbeat of a minute, the stream and the socket still end within a second."""
    site = await make_site(heartbeat=60.0)
    alice = await site.person("alice")
    stream = await site.sse(alice.cookie)
    socket = await site.ws(alice.cookie)
    await site.auth.sessions.revoke(alice.session_id)
    assert await stream.ended(within=1.0)
    assert await socket.closed(within=1.0) == realtime.WS_SESSION_ENDED


async def test_the_server_lets_go_of_clients_that_leave(make_site: MakeSite) -> None:
    site = await make_site()
    alice = await site.person("alice")
    stream = await site.sse(alice.cookie)
    socket = await site.ws(alice.cookie)
    assert realtime.open_connections(site.app) == 2
    await socket.socket.close()
    stream.close()
    # the socket at once; the stream when its next ping fails to be written
    loop = asyncio.get_running_loop()
    deadline = loop.time() + HEARTBEAT * 10
    while realtime.open_connections(site.app) > 0:
        assert loop.time() < deadline, "the server still holds a connection whose client left"
        await asyncio.sleep(0.02)


async def test_a_disabled_user_or_a_changed_role_ends_the_connections(site: Site) -> None:
    boss = await site.person("boss", role="admin")
    alice = await site.person("alice")
    dave = await site.person("dave")
    disabled_stream = await site.sse(alice.bearer)
    disabled_socket = await site.ws(alice.bearer)
    promoted = await site.sse(dave.cookie)
    await site.auth.users.update(boss.user, alice.user.id, disabled=True)
    await site.auth.users.update(boss.user, dave.user.id, role="admin")
    assert await disabled_stream.ended(within=HEARTBEAT * 10)
    assert await disabled_socket.closed(within=HEARTBEAT * 10) == realtime.WS_SESSION_ENDED
    # dave may now see `admins`: his stream ends so that the reconnect carries the new rights
    assert await promoted.ended(within=HEARTBEAT * 10)
    again = await site.sse(dave.cookie)
    admins = await site.publish("admins", 1)
    assert (await again.event())["id"] == admins.id
    again.close()


async def test_shutdown_closes_every_stream_and_socket_promptly(make_site: MakeSite) -> None:
    site = await make_site()
    alice = await site.person("alice")
    streams = [await site.sse(alice.cookie) for _ in range(3)]
    sockets = [await site.ws(alice.cookie) for _ in range(3)]
    assert realtime.open_connections(site.app) == 6
    # the clients are reading, as a browser would be
    ended = [asyncio.create_task(stream.ended(within=WAIT)) for stream in streams]
    closed = [asyncio.create_task(socket.closed(within=WAIT)) for socket in sockets]
    loop = asyncio.get_running_loop()
    started = loop.time()
    await site.server.close()
    assert loop.time() - started < 3  # not the shutdown grace period
    assert await asyncio.gather(*ended) == [True] * 3
    assert await asyncio.gather(*closed) == [WSCloseCode.GOING_AWAY] * 3
    assert realtime.open_connections(site.app) == 0


async def test_an_event_published_on_one_instance_reaches_clients_of_another(
    make_site: MakeSite, redis_url: str
) -> None:
    a = await make_site(redis_url=redis_url)
    b = await make_site(redis_url=redis_url)
    # separate SQLite files, one person: the same first user in both
    alice_a = await a.person("alice")
    alice_b = await b.person("alice")
    assert alice_a.user.id == alice_b.user.id
    stream = await b.sse(alice_b.cookie)
    socket = await b.ws(alice_b.bearer)
    events = [
        await a.publish(f"user:{alice_a.user.id}", 1),
        await a.publish("admins", 2),
        await a.publish("all", 3),
    ]
    expected = [events[0].to_dict(), events[2].to_dict()]
    assert [await stream.event(), await stream.event()] == expected
    assert [await socket.event(), await socket.event()] == expected
    # and once only: the next event is the next one published
    last = await a.publish("all", 4)
    assert (await stream.event())["id"] == last.id
    assert (await socket.event())["id"] == last.id
    stream.close()
    await socket.socket.close()


async def test_a_client_that_stops_reading_holds_up_nobody_and_its_backlog_is_bounded(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    alice = await site.person("alice")
    bob = await site.person("bob")
    stuck = await site.sse(alice.cookie)  # connected, never read again
    reader = await site.sse(bob.cookie)
    payload = "x" * 64 * 1024
    # more than the stuck client's queue and everything the kernel can buffer for it
    count = realtime.MAX_QUEUE + _socket_buffer_bytes() // len(payload) + 20
    for n in range(count):  # the reader gets each event while the stuck one's pile up
        await site.app[SERVICES].events.publish(
            make_event(f"{site.kind}.thing.happened", {"n": n, "payload": payload})
        )
        assert (await reader.event())["data"]["n"] == n
    # the stuck client's server side kept at most MAX_QUEUE of them and dropped the oldest
    stuck_subscription = next(
        s
        for s in site.app[SERVICES].events._by_topic["all"]
        if f"user:{alice.user.id}" in (s.topics or ())
    )
    assert stuck_subscription.dropped >= 10
    stuck.close()
    reader.close()


def _socket_buffer_bytes() -> int:
    """The most a loopback TCP connection can hold in flight: send plus receive buffer."""
    total = 0
    for name in ("tcp_rmem", "tcp_wmem"):
        total += int(Path(f"/proc/sys/net/ipv4/{name}").read_text().split()[2])
    return total
