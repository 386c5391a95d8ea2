"""`GET /ws`: subscriptions within what a user may see, refusals, ping/pong, origin check."""

from __future__ import annotations

import aiohttp
import pytest

from .conftest import MakeSite, Site


async def test_on_connect_a_user_gets_every_visible_topic_and_nothing_else(site: Site) -> None:
    alice = await site.person("alice")
    bob = await site.person("bob")
    socket = await site.ws(alice.bearer)
    assert socket.topics == {f"user:{alice.user.id}", "all"}
    await site.publish(f"user:{bob.user.id}", 1)
    await site.publish("admins", 2)
    everyone = await site.publish("all", 3)
    mine = await site.publish(f"user:{alice.user.id}", 4)
    assert await socket.event() == everyone.to_dict()
    assert await socket.event() == mine.to_dict()
    await socket.socket.close()


async def test_an_admin_socket_includes_admins(site: Site) -> None:
    boss = await site.person("boss", role="admin")
    socket = await site.ws(boss.cookie)
    assert socket.topics == {f"user:{boss.user.id}", "all", "admins"}
    admins = await site.publish("admins", 1)
    assert (await socket.event())["id"] == admins.id
    await socket.socket.close()


async def test_subscribing_to_a_topic_one_may_not_see_is_refused_and_changes_nothing(
    make_site: MakeSite,
) -> None:
    site = await make_site()
    alice = await site.person("alice")
    bob = await site.person("bob")
    socket = await site.ws(alice.cookie)
    await socket.send({"type": "unsubscribe", "topics": ["all"]})
    assert await socket.receive() == {"type": "subscriptions", "topics": [f"user:{alice.user.id}"]}

    await socket.send({"type": "subscribe", "topics": ["all", f"user:{bob.user.id}", "admins"]})
    refusals = [await socket.receive(), await socket.receive()]
    assert refusals == [
        {"type": "error", "code": "forbidden_topic", "topic": f"user:{bob.user.id}"},
        {"type": "error", "code": "forbidden_topic", "topic": "admins"},
    ]
    await socket.send({"type": "subscribe", "topics": ["user:abc"]})
    assert await socket.receive() == {
        "type": "error",
        "code": "forbidden_topic",
        "topic": "user:abc",
    }
    # nothing changed: "all" (asked for next to the refused ones) is still not subscribed
    await site.publish(f"user:{bob.user.id}", 1)
    await site.publish("admins", 2)
    await site.publish("all", 3)
    mine = await site.publish(f"user:{alice.user.id}", 4)
    assert (await socket.event())["id"] == mine.id

    await socket.send({"type": "subscribe", "topics": ["all"]})
    assert (await socket.receive())["topics"] == ["all", f"user:{alice.user.id}"]
    everyone = await site.publish("all", 5)
    assert (await socket.event())["id"] == everyone.id
    await socket.socket.close()


async def test_ping_pong_and_malformed_messages_keep_the_connection(make_site: MakeSite) -> None:
    site = await make_site()
    alice = await site.person("alice")
    socket = await site.ws(alice.cookie)
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    for bad in ["{not json", "[1, 2]", '{"type": "dance"}', '{"type": "subscribe"}']:
        await socket.send(bad)
        reply = await socket.receive()
        assert reply["type"] == "error" and reply["code"] == "bad_message", (bad, reply)
    await socket.socket.send_bytes(b"\x00\x01")
    assert (await socket.receive())["code"] == "bad_message"
    await socket.send({"type": "ping"})
    assert await socket.receive() == {"type": "pong"}
    event = await site.publish("all", 1)
    assert (await socket.event())["id"] == event.id
    await socket.socket.close()


async def test_a_foreign_origin_with_a_cookie_is_refused(make_site: MakeSite) -> None:
    site = await make_site(server={"base_url": "https://medianest.example"})
    alice = await site.person("alice")
    with pytest.raises(aiohttp.WSServerHandshakeError) as refused:
        await site.ws(alice.cookie, origin="https://evil.example")
    assert refused.value.status == 403
    with pytest.raises(aiohttp.WSServerHandshakeError) as null_origin:
        await site.ws(alice.cookie, origin="null")
    assert null_origin.value.status == 403
    # the page's own origin: the host it was served from, or the configured base_url
    own = await site.ws(alice.cookie, origin=site.url)
    behind_proxy = await site.ws(alice.cookie, origin="https://medianest.example")
    # a token cannot be sent by another site's page, so no origin is checked
    scripted = await site.ws(alice.bearer, origin="https://evil.example")
    event = await site.publish("all", 1)
    for socket in (own, behind_proxy, scripted):
        assert (await socket.event())["id"] == event.id
        await socket.socket.close()


async def test_a_plain_get_on_ws_is_a_400(make_site: MakeSite) -> None:
    site = await make_site()
    alice = await site.person("alice")
    response = await site.http.get(f"{site.url}/ws", headers=alice.cookie)
    assert response.status == 400
