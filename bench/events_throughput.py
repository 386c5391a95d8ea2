"""Benchmark: event bus throughput, publish to one subscriber in the same process.

Targets (issue: shared services): MemoryEventBus 20,000 events/s with 50,000 events;
RedisEventBus 5,000 events/s with 20,000 events. Time runs from the first publish to the last
event received. Baselines, measured in the same run with the same number of events: a bare
asyncio.Queue of dicts for the memory bus; for the Redis bus, redis-py PUBLISH of the same JSON
(one message per event, pipelined) read by a bare pub/sub reader. "bus/baseline" is the ratio
of the rates (the Redis bus can beat its baseline: it sends queued events as one message).
Redis at 127.0.0.1:6379 only; its part is skipped if Redis is not running.

    .venv/bin/python bench/events_throughput.py [--runs 3] [--memory-events 50000]
        [--redis-events 20000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from medianest_server.events import EventBus, MemoryEventBus, RedisEventBus, make_event

REDIS_URL = "redis://127.0.0.1:6379/0"
YIELD_EVERY = 500  # a publisher that never awaits would starve the consumer: let it run
RAW_PIPELINE = 500
TIMEOUT_SECONDS = 120


async def bus_rate(make_bus: Callable[[], Awaitable[EventBus]], n: int) -> float:
    """Events/s from the first publish to the last event received by one subscriber."""
    bus = await make_bus()
    try:
        sub = bus.subscribe()
        events = [make_event("bench.event.published", {"n": i}) for i in range(n)]

        async def consume() -> float:
            for _ in range(n):
                if await sub.get() is None:
                    raise RuntimeError("subscription ended early")
            return time.perf_counter()

        consumer = asyncio.create_task(consume())
        start = time.perf_counter()
        for i, event in enumerate(events):
            await bus.publish(event)
            if i % YIELD_EVERY == 0:
                await asyncio.sleep(0)
        end = await asyncio.wait_for(consumer, TIMEOUT_SECONDS)
        if sub.dropped:
            raise RuntimeError(f"the subscriber dropped {sub.dropped} events")
        return n / (end - start)
    finally:
        await bus.close()


async def queue_rate(n: int) -> float:
    """The same pattern on a bare asyncio.Queue of dicts."""
    queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
    items = [{"type": "bench.event.published", "data": {"n": i}} for i in range(n)]

    async def consume() -> float:
        for _ in range(n):
            await queue.get()
        return time.perf_counter()

    consumer = asyncio.create_task(consume())
    start = time.perf_counter()
    for i, item in enumerate(items):
        queue.put_nowait(item)
        if i % YIELD_EVERY == 0:
            await asyncio.sleep(0)
    end = await asyncio.wait_for(consumer, TIMEOUT_SECONDS)
    return n / (end - start)


async def raw_redis_rate(n: int) -> float:
    """redis-py PUBLISH of the same JSON, one message per event, pipelined RAW_PIPELINE per
    round trip (awaiting each PUBLISH alone is slower still), received by a bare reader."""
    channel = f"medianest:bench:{uuid.uuid4().hex}"
    publisher = aioredis.Redis.from_url(REDIS_URL)
    listener = aioredis.Redis.from_url(REDIS_URL)
    pubsub = listener.pubsub()
    try:
        await pubsub.subscribe(channel)
        while True:  # wait for the confirmation, so no message is published before it
            message = await pubsub.get_message(timeout=None)
            if message is not None and message["type"] == "subscribe":
                break
        payloads = [
            json.dumps(make_event("bench.event.published", {"n": i}).to_dict()) for i in range(n)
        ]

        async def consume() -> float:
            received = 0
            while received < n:
                message = await pubsub.get_message(timeout=None)
                if message is not None and message["type"] == "message":
                    json.loads(message["data"])
                    received += 1
            return time.perf_counter()

        consumer = asyncio.create_task(consume())
        start = time.perf_counter()
        for first in range(0, n, RAW_PIPELINE):
            async with publisher.pipeline(transaction=False) as pipe:
                for payload in payloads[first : first + RAW_PIPELINE]:
                    pipe.publish(channel, payload)
                await pipe.execute()
        end = await asyncio.wait_for(consumer, TIMEOUT_SECONDS)
        return n / (end - start)
    finally:
        await pubsub.aclose()  # type: ignore[no-untyped-call]
        await publisher.aclose()
        await listener.aclose()


async def redis_available() -> str | None:
    client = aioredis.Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await client.ping()
        return None
    except (RedisError, OSError) as exc:
        return str(exc)
    finally:
        await client.aclose()


async def median_rate(runs: int, measure: Callable[[], Awaitable[float]]) -> float:
    return statistics.median([await measure() for _ in range(runs)])


def report(name: str, n: int, rate: float, target: float, baseline_name: str, base: float) -> None:
    verdict = "ok" if rate >= target else "BELOW TARGET"
    print(
        f"{name:<16} {n:>7,} events  {rate:>10,.0f} events/s  target {target:>7,.0f}/s  {verdict}"
    )
    print(
        f"{'':<16} baseline ({baseline_name}): {base:>10,.0f} events/s;"
        f" bus/baseline = {rate / base:.2f}"
    )


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3, help="median of this many runs")
    parser.add_argument("--memory-events", type=int, default=50_000)
    parser.add_argument("--redis-events", type=int, default=20_000)
    args = parser.parse_args()

    async def memory_bus() -> EventBus:
        bus = MemoryEventBus()
        await bus.start()
        return bus

    n = args.memory_events
    rate = await median_rate(args.runs, lambda: bus_rate(memory_bus, n))
    base = await median_rate(args.runs, lambda: queue_rate(n))
    report("MemoryEventBus", n, rate, 20_000, "asyncio.Queue of dicts", base)

    problem = await redis_available()
    if problem is not None:
        print(f"RedisEventBus    skipped: Redis at {REDIS_URL} is not reachable ({problem})")
        return

    async def redis_bus() -> EventBus:
        client = aioredis.Redis.from_url(REDIS_URL)
        bus = RedisEventBus(client, channel=f"medianest:bench:{uuid.uuid4().hex}", owns_client=True)
        await bus.start()
        return bus

    n = args.redis_events
    rate = await median_rate(args.runs, lambda: bus_rate(redis_bus, n))
    base = await median_rate(args.runs, lambda: raw_redis_rate(n))
    report("RedisEventBus", n, rate, 5_000, "pipelined redis-py PUBLISH + reader", base)


if __name__ == "__main__":
    asyncio.run(main())
