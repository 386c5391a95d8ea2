"""The event bus, on MemoryEventBus and on RedisEventBus against real Redis."""

from __future__ import annotations

import asyncio
import json
import logging
import re
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime

import pytest
import redis.asyncio as aioredis

from medianest_server.clock import ManualClock
from medianest_server.events import (
    Event,
    EventBus,
    MemoryEventBus,
    RedisEventBus,
    Subscription,
    make_event,
    topics_for,
)
from tests.conftest import eventually
from tests.services.conftest import RedisEnv

BusFactory = Callable[..., Awaitable[EventBus]]


@pytest.fixture
async def make_bus(backend: str, redis_env: RedisEnv) -> AsyncIterator[BusFactory]:
    """Make started buses of the backend under test; with Redis each has its own client (as
    separate server instances would) and they share one channel unique to the test."""
    buses: list[EventBus] = []

    async def make(*, history_size: int = 1000, client: aioredis.Redis | None = None) -> EventBus:
        bus: EventBus
        if backend == "memory":
            bus = MemoryEventBus(history_size=history_size)
        else:
            bus = RedisEventBus(
                client or await redis_env.client(),
                channel=redis_env.prefix + "events",
                history_size=history_size,
            )
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


@pytest.fixture
async def redis_buses(
    redis_env: RedisEnv,
) -> AsyncIterator[Callable[..., Awaitable[RedisEventBus]]]:
    """Redis-only tests: started buses on the test's channel, each on its own client (or on
    `client`), closed afterwards."""
    buses: list[RedisEventBus] = []

    async def make(*, client: aioredis.Redis | None = None) -> RedisEventBus:
        bus = RedisEventBus(client or await redis_env.client(), channel=redis_env.prefix + "events")
        await bus.start()
        buses.append(bus)
        return bus

    yield make
    for bus in buses:
        await bus.close()


@pytest.fixture
async def bus(make_bus: BusFactory) -> EventBus:
    return await make_bus()


async def receive(sub: Subscription, count: int, within: float = 5.0) -> list[Event]:
    """The next `count` events of `sub`, failing if they do not all arrive `within` seconds."""

    async def collect() -> list[Event]:
        return [await anext(sub) for _ in range(count)]

    return await asyncio.wait_for(collect(), within)


async def nothing_more(sub: Subscription) -> bool:
    return await sub.get(timeout=0) is None


@pytest.mark.parametrize(
    "bad_type",
    [
        "Plex.library.updated",
        "plex.library",
        "plex..updated",
        "plex.library.updated.now",
        "",
        "a-b.c.d",
    ],
)
def test_make_event_refuses_a_malformed_type(bad_type: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad_type))):
        make_event(bad_type)


@pytest.mark.parametrize(
    "bad_topic", ["user:abc", "user:", "user:01", "users:1", "admin", "All", ""]
)
def test_make_event_refuses_a_malformed_topic(bad_topic: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(bad_topic))):
        make_event("plex.library.updated", topic=bad_topic)


def test_make_event_refuses_data_that_is_not_json() -> None:
    with pytest.raises(ValueError, match=r"youtube\.download\.completed"):
        make_event("youtube.download.completed", {"file": object()})


def test_an_event_round_trips_through_json() -> None:
    clock = ManualClock(datetime(2026, 3, 1, 12, 30, 15, 250000, tzinfo=UTC))
    event = make_event("youtube.download.progress", {"percent": 42.5}, topic="user:7", clock=clock)

    as_json = json.dumps(event.to_dict())
    assert json.loads(as_json)["at"] == "2026-03-01T12:30:15.250000Z"
    assert Event.from_dict(json.loads(as_json)) == event
    with pytest.raises(ValueError, match="topic"):
        Event.from_dict({**event.to_dict(), "topic": "everyone"})


def test_ids_sort_in_creation_order_even_within_one_clock_tick() -> None:
    clock = ManualClock()
    events = [make_event("core.notification.created", clock=clock) for _ in range(1000)]
    ids = [e.id for e in events]
    assert ids == sorted(ids)
    assert len(set(ids)) == 1000
    clock.advance(1)
    assert make_event("core.notification.created", clock=clock).id > ids[-1]


def test_topics_for_a_user_and_an_admin() -> None:
    assert topics_for(5, False) == {"user:5", "all"}
    assert topics_for(1, True) == {"user:1", "all", "admins"}


async def test_subscribers_get_only_the_topics_they_may_see(bus: EventBus) -> None:
    alice = bus.subscribe(topics=topics_for(1, False))
    admin = bus.subscribe(topics=topics_for(2, True))
    server = bus.subscribe()  # all topics
    for topic in ["user:1", "user:2", "admins", "all"]:
        await bus.publish(make_event("overseerr.request.updated", {"for": topic}, topic=topic))

    assert [e.topic for e in await receive(alice, 2)] == ["user:1", "all"]
    assert [e.topic for e in await receive(admin, 3)] == ["user:2", "admins", "all"]
    assert [e.topic for e in await receive(server, 4)] == ["user:1", "user:2", "admins", "all"]
    # the last event arrived after all earlier ones, so nothing else can still be on its way
    assert await nothing_more(alice) and await nothing_more(admin) and await nothing_more(server)


async def test_user_1_never_sees_user_2s_events(bus: EventBus) -> None:
    user_1 = bus.subscribe(topics=topics_for(1, False))
    for n in range(50):
        await bus.publish(make_event("youtube.download.progress", {"n": n}, topic="user:2"))
    await bus.publish(make_event("youtube.download.completed", topic="user:1"))

    [event] = await receive(user_1, 1)
    assert event.type == "youtube.download.completed"
    assert await nothing_more(user_1)


async def test_subscribe_by_type_and_type_wildcard(bus: EventBus) -> None:
    plex = bus.subscribe(types=["plex.*"])
    exact = bus.subscribe(types=["uptime_kuma.monitor.changed", "plex.library.*"])
    for event_type in [
        "youtube.download.completed",
        "plex.library.updated",
        "uptime_kuma.monitor.changed",
        "plexus.thing.happened",
        "plex.session.started",
    ]:
        await bus.publish(make_event(event_type))

    assert [e.type for e in await receive(plex, 2)] == [
        "plex.library.updated",
        "plex.session.started",
    ]
    assert [e.type for e in await receive(exact, 2)] == [
        "plex.library.updated",
        "uptime_kuma.monitor.changed",
    ]
    assert await nothing_more(plex) and await nothing_more(exact)
    with pytest.raises(ValueError, match="plex"):
        bus.subscribe(types=["plex*"])
    with pytest.raises(ValueError, match="everyone"):
        bus.subscribe(topics=["everyone"])


async def test_1000_events_arrive_in_publish_order(bus: EventBus) -> None:
    sub = bus.subscribe(topics=["all"])
    sent = [make_event("youtube.download.progress", {"n": n}) for n in range(1000)]
    for event in sent:
        await bus.publish(event)

    assert await receive(sub, 1000) == sent


async def test_a_slow_consumer_loses_its_oldest_events_and_publish_never_blocks(
    bus: EventBus,
) -> None:
    slow = bus.subscribe(max_queue=10)
    watcher = bus.subscribe()

    async def publish_all() -> None:
        for n in range(25):
            await bus.publish(make_event("youtube.download.progress", {"n": n}))

    await asyncio.wait_for(publish_all(), 5)
    await receive(watcher, 25)  # all 25 have been dispatched to every subscriber

    assert slow.dropped == 15
    assert [e.data["n"] for e in await receive(slow, 10)] == list(range(15, 25))
    assert await nothing_more(slow)
    assert watcher.dropped == 0


async def test_a_thousand_subscribers_are_served_without_waiting(bus: EventBus) -> None:
    subs = [bus.subscribe(topics=topics_for(user_id, False)) for user_id in range(1000)]
    watcher = bus.subscribe()
    await bus.publish(make_event("core.notification.created", {"text": "maintenance at 22:00"}))
    await receive(watcher, 1)
    received = [await sub.get(timeout=0) for sub in subs]
    assert all(event is not None and event.topic == "all" for event in received)


async def test_closing_ends_iteration(bus: EventBus) -> None:
    async def consume(sub: Subscription, seen: list[Event], got_one: asyncio.Event) -> None:
        async for event in sub:
            seen.append(event)
            got_one.set()

    closed_by_consumer, closed_by_bus = bus.subscribe(), bus.subscribe()
    seen: tuple[list[Event], list[Event]] = ([], [])
    got_one = (asyncio.Event(), asyncio.Event())
    consumers = [
        asyncio.create_task(consume(sub, seen[i], got_one[i]))
        for i, sub in enumerate([closed_by_consumer, closed_by_bus])
    ]
    event = make_event("plex.library.updated")
    await bus.publish(event)
    await asyncio.wait_for(asyncio.gather(got_one[0].wait(), got_one[1].wait()), 5)

    closed_by_consumer.close()
    await asyncio.wait_for(consumers[0], 5)
    await bus.close()
    await asyncio.wait_for(consumers[1], 5)
    assert seen == ([event], [event])
    with pytest.raises(RuntimeError, match="closed"):
        await bus.publish(make_event("plex.library.updated"))


async def test_get_returns_none_after_its_timeout(bus: EventBus) -> None:
    sub = bus.subscribe()
    assert await sub.get(timeout=0.01) is None


async def test_publishing_before_start_is_refused(backend: str, redis_env: RedisEnv) -> None:
    if backend == "memory":
        bus: EventBus = MemoryEventBus()
    else:
        bus = RedisEventBus(await redis_env.client(), channel=redis_env.prefix + "events")
    with pytest.raises(RuntimeError, match="start"):
        await bus.publish(make_event("plex.library.updated"))
    await bus.close()


async def test_history_after_an_id_gives_later_visible_events(make_bus: BusFactory) -> None:
    bus = await make_bus(history_size=5)
    watcher = bus.subscribe()
    sent = [
        make_event("overseerr.request.updated", {"n": n}, topic=topic)
        for n, topic in enumerate(["user:1", "user:2", "all", "user:1", "admins", "all", "user:1"])
    ]
    for event in sent:
        await bus.publish(event)
    await receive(watcher, len(sent))  # with Redis, history fills as events come back
    alice = topics_for(1, False)

    assert bus.history(after=None, topics=alice) == []
    assert bus.history(after=sent[3].id, topics=alice) == [sent[5], sent[6]]
    assert bus.history(after=sent[3].id, topics=alice, limit=1) == [sent[6]]
    assert bus.history(after=sent[6].id, topics=alice) == []
    # sent[0] has left the 5-event buffer: every buffered event alice may see
    assert bus.history(after=sent[0].id, topics=alice) == [sent[2], sent[3], sent[5], sent[6]]
    assert bus.history(after=sent[0].id, topics=topics_for(9, True)) == [sent[2], sent[4], sent[5]]

    # replay also says whether the client missed something the buffer no longer holds
    assert bus.replay(after=sent[3].id, topics=alice) == ([sent[5], sent[6]], True)
    assert bus.replay(after=sent[6].id, topics=alice) == ([], True)
    assert bus.replay(after=sent[0].id, topics=alice)[1] is False  # left the buffer
    assert bus.replay(after=sent[3].id, topics=alice, limit=1) == ([sent[6]], False)
    assert bus.replay(after=None, topics=alice) == ([], True)
    before_all = make_event("overseerr.request.updated").id.replace(
        make_event("overseerr.request.updated").id[:4], "0000"
    )
    assert bus.replay(after=before_all, topics=alice)[1] is False  # before this instance's time


async def test_a_resume_id_on_an_instance_that_saw_nothing_is_incomplete(
    make_bus: BusFactory,
) -> None:
    """After a restart the buffer is empty: whatever the client missed is unknown."""
    bus = await make_bus()
    old = make_event("overseerr.request.updated")
    assert bus.replay(after=old.id, topics=["all"]) == ([], False)


async def test_an_event_reaches_every_redis_instance_exactly_once(
    redis_buses: Callable[..., Awaitable[RedisEventBus]],
) -> None:
    server_a, server_b = await redis_buses(), await redis_buses()
    on_a, on_b = server_a.subscribe(), server_b.subscribe()

    first = make_event("plex.library.updated", {"section": 1})
    second = make_event("plex.library.updated", {"section": 2})
    from_b = make_event("uptime_kuma.monitor.changed", {"monitor": "plex"})
    await server_a.publish(first)
    await server_a.publish(second)
    assert await receive(on_a, 2) == [first, second]
    await server_b.publish(from_b)

    # a duplicate of A's events would arrive before B's event
    assert await receive(on_a, 1) == [from_b]
    assert await receive(on_b, 3) == [first, second, from_b]
    assert await nothing_more(on_a) and await nothing_more(on_b)


async def test_the_redis_reader_recovers_when_its_connection_is_killed(
    redis_env: RedisEnv,
    redis_buses: Callable[..., Awaitable[RedisEventBus]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    name = f"medianest-test-{uuid.uuid4().hex[:8]}"
    bus = await redis_buses(client=await redis_env.client(name=name))
    sub = bus.subscribe()
    admin = await redis_env.client()
    readers = [c for c in await admin.client_list() if c["name"] == name and c.get("sub") == "1"]
    assert len(readers) == 1
    caplog.set_level(logging.INFO, logger="medianest_server.events")

    await admin.client_kill_filter(_id=readers[0]["id"])

    async def subscribed_again() -> bool:
        [(_, count)] = await admin.pubsub_numsub(redis_env.prefix + "events")
        return int(count) == 1

    await eventually(subscribed_again, what="the reader subscribing again")
    event = make_event("uptime_kuma.monitor.changed", {"monitor": "redis"})
    await bus.publish(event)
    assert await receive(sub, 1) == [event]

    messages = [r.getMessage() for r in caplog.records if r.name == "medianest_server.events"]
    assert messages.count("lost the Redis event channel; reconnecting") == 1
    assert messages.count("Redis event channel recovered") == 1


async def test_events_queued_when_a_redis_bus_closes_are_still_sent(
    redis_buses: Callable[..., Awaitable[RedisEventBus]],
) -> None:
    server_a, server_b = await redis_buses(), await redis_buses()
    on_b = server_b.subscribe()
    sent = [make_event("youtube.download.completed", {"n": n}) for n in range(100)]
    for event in sent:
        await server_a.publish(event)
    await server_a.close()  # e.g. a rolling restart: what was published still goes out

    assert await receive(on_b, 100) == sent


async def test_a_malformed_message_on_the_channel_is_logged_and_skipped(
    redis_env: RedisEnv,
    redis_buses: Callable[..., Awaitable[RedisEventBus]],
    caplog: pytest.LogCaptureFixture,
) -> None:
    bus = await redis_buses()
    sub = bus.subscribe()
    raw = await redis_env.client()
    good = make_event("plex.library.updated")
    caplog.set_level(logging.WARNING, logger="medianest_server.events")

    await raw.publish(redis_env.prefix + "events", "not json")
    await raw.publish(redis_env.prefix + "events", json.dumps([{"type": "no.id"}, good.to_dict()]))

    assert await receive(sub, 1) == [good]
    malformed = [
        r for r in caplog.records if r.getMessage() == "ignoring a malformed event from Redis"
    ]
    assert len(malformed) == 2
