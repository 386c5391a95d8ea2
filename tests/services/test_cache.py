"""The cache, on MemoryCache and on RedisCache against real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from medianest_server.cache import Cache, MemoryCache, RedisCache
from medianest_server.clock import ManualClock
from tests.services.conftest import RedisEnv


@pytest.fixture
async def cache(backend: str, redis_env: RedisEnv, clock: ManualClock) -> AsyncIterator[Cache]:
    if backend == "memory":
        made: Cache = MemoryCache(clock=clock)
    else:
        made = RedisCache(await redis_env.client(), prefix=redis_env.prefix + "cache:", clock=clock)
    yield made
    await made.close()


class CountingLoader:
    """A loader that counts its calls and, if asked, waits for `gate` before answering."""

    def __init__(self, value: Any = None, *, error: Exception | None = None) -> None:
        self.value = value
        self.error = error
        self.calls = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.gate.set()

    async def __call__(self) -> Any:
        self.calls += 1
        self.entered.set()
        await self.gate.wait()
        if self.error is not None:
            raise self.error
        return self.value


async def test_miss_then_set_get_until_ttl_expires(cache: Cache, clock: ManualClock) -> None:
    assert await cache.get("poster:1") is None
    await cache.set("poster:1", {"url": "/img/1.jpg", "size": [300, 450]}, ttl_seconds=10)
    assert await cache.get("poster:1") == {"url": "/img/1.jpg", "size": [300, 450]}

    clock.advance(9.9)
    assert await cache.get("poster:1") == {"url": "/img/1.jpg", "size": [300, 450]}
    clock.advance(0.2)
    assert await cache.get("poster:1") is None


async def test_every_json_type_round_trips(cache: Cache) -> None:
    for value in ["text", 42, 2.5, True, False, [1, "two", None], {"nested": {"a": [1.5]}}]:
        await cache.set("value", value, ttl_seconds=60)
        assert await cache.get("value") == value
    await cache.set("tuple", (1, 2), ttl_seconds=60)
    assert await cache.get("tuple") == [1, 2]  # JSON has no tuples, on either backend


async def test_a_value_that_is_not_json_is_refused(cache: Cache) -> None:
    with pytest.raises(TypeError):
        await cache.set("bad", {"when": object()}, ttl_seconds=60)
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.set("bad", 1, ttl_seconds=0)
    assert await cache.get("bad") is None


async def test_delete(cache: Cache) -> None:
    await cache.set("a", 1, ttl_seconds=60)
    await cache.set("b", 2, ttl_seconds=60)
    await cache.delete("a")
    await cache.delete("never-set")
    assert await cache.get("a") is None
    assert await cache.get("b") == 2


async def test_delete_prefix_drops_one_users_entries(cache: Cache) -> None:
    for key in ["user:1:watchlist", "user:1:requests", "user:12:watchlist", "user:2:watchlist"]:
        await cache.set(key, key, ttl_seconds=60)

    assert await cache.delete_prefix("user:1:") == 2

    assert await cache.get("user:1:watchlist") is None
    assert await cache.get("user:1:requests") is None
    assert await cache.get("user:12:watchlist") == "user:12:watchlist"
    assert await cache.get("user:2:watchlist") == "user:2:watchlist"


async def test_delete_prefix_treats_glob_characters_literally(cache: Cache) -> None:
    await cache.set("search:a*", 1, ttl_seconds=60)
    await cache.set("search:ab", 2, ttl_seconds=60)
    assert await cache.delete_prefix("search:a*") == 1
    assert await cache.get("search:ab") == 2


async def test_namespaces_are_isolated(cache: Cache) -> None:
    plex, youtube = cache.namespace("plex"), cache.namespace("youtube")
    await plex.set("status", "up", ttl_seconds=60)
    await youtube.set("status", "down", ttl_seconds=60)

    assert await plex.get("status") == "up"
    assert await youtube.get("status") == "down"
    assert await cache.get("plex:status") == "up"  # the view prefixes "<prefix>:"

    assert await plex.delete_prefix("") == 1
    assert await plex.get("status") is None
    assert await youtube.get("status") == "down"

    nested = plex.namespace("sessions")
    await nested.set("1", "playing", ttl_seconds=60)
    assert await cache.get("plex:sessions:1") == "playing"
    await plex.close()  # closing a view leaves the cache usable
    assert await youtube.get("status") == "down"


async def test_a_returned_value_is_a_copy(cache: Cache) -> None:
    stored = {"titles": ["Alien"]}
    await cache.set("watchlist", stored, ttl_seconds=60)
    stored["titles"].append("changed after set")

    first = await cache.get("watchlist")
    assert first is not None
    first["titles"].append("changed after get")
    assert await cache.get("watchlist") == {"titles": ["Alien"]}

    loaded = await cache.get_or_load("loaded", CountingLoader({"n": [1]}), ttl_seconds=60)
    loaded["n"].append(2)
    assert await cache.get("loaded") == {"n": [1]}


async def test_200_concurrent_misses_make_one_loader_call(cache: Cache) -> None:
    loader = CountingLoader({"library": "Movies", "items": 1234})
    loader.gate.clear()
    callers = [
        asyncio.create_task(cache.get_or_load("library:1", loader, ttl_seconds=60))
        for _ in range(200)
    ]
    await asyncio.wait_for(loader.entered.wait(), 5)
    loader.gate.set()
    results = await asyncio.wait_for(asyncio.gather(*callers), 5)

    assert loader.calls == 1
    assert all(r == {"library": "Movies", "items": 1234} for r in results)
    results[0]["items"] = 0  # callers that shared a load do not share one object
    assert results[1]["items"] == 1234
    assert await cache.get_or_load("library:1", loader, ttl_seconds=60) == results[1]
    assert loader.calls == 1


async def test_get_or_load_loads_again_after_expiry(cache: Cache, clock: ManualClock) -> None:
    loader = CountingLoader("fresh")
    assert await cache.get_or_load("k", loader, ttl_seconds=30) == "fresh"
    clock.advance(31)
    assert await cache.get_or_load("k", loader, ttl_seconds=30) == "fresh"
    assert loader.calls == 2


async def test_a_loader_error_reaches_every_waiter_and_is_not_cached(cache: Cache) -> None:
    failing = CountingLoader(error=ConnectionError("Overseerr is down"))
    failing.gate.clear()
    callers = [
        asyncio.create_task(cache.get_or_load("requests", failing, ttl_seconds=60))
        for _ in range(20)
    ]
    await asyncio.wait_for(failing.entered.wait(), 5)
    failing.gate.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*callers, return_exceptions=True), 5)

    assert failing.calls == 1
    assert all(isinstance(o, ConnectionError) and "Overseerr" in str(o) for o in outcomes)
    assert await cache.get("requests") is None
    working = CountingLoader(["request 1"])
    assert await cache.get_or_load("requests", working, ttl_seconds=60) == ["request 1"]
    assert working.calls == 1


async def test_a_loader_returning_none_is_not_cached(cache: Cache) -> None:
    loader = CountingLoader(None)
    assert await cache.get_or_load("nothing", loader, ttl_seconds=60) is None
    assert await cache.get_or_load("nothing", loader, ttl_seconds=60) is None
    assert loader.calls == 2


async def test_memory_cache_keeps_the_most_recently_used_entries() -> None:
    cache = MemoryCache(max_entries=2)
    await cache.set("a", 1, ttl_seconds=60)
    await cache.set("b", 2, ttl_seconds=60)
    assert await cache.get("a") == 1  # "b" is now the least recently used
    await cache.set("c", 3, ttl_seconds=60)
    assert (await cache.get("a"), await cache.get("b"), await cache.get("c")) == (1, None, 3)
    assert len(cache) == 2


async def test_two_redis_instances_loading_one_key_make_one_loader_call(
    redis_env: RedisEnv,
) -> None:
    prefix = redis_env.prefix + "cache:"
    server_a = RedisCache(await redis_env.client(), prefix=prefix, poll_interval_seconds=0.01)
    server_b = RedisCache(await redis_env.client(), prefix=prefix, poll_interval_seconds=0.01)
    calls: list[str] = []
    gate = asyncio.Event()

    def loader_for(server: str) -> Callable[[], Awaitable[Any]]:
        async def load() -> Any:
            calls.append(server)
            await gate.wait()
            return {"loaded_by": server}

        return load

    on_a = [
        asyncio.create_task(server_a.get_or_load("plex:sections", loader_for("a"), 60))
        for _ in range(10)
    ]
    on_b = [
        asyncio.create_task(server_b.get_or_load("plex:sections", loader_for("b"), 60))
        for _ in range(10)
    ]
    # Whichever server took the lock is now inside its loader; the other must wait for it
    # rather than load too. Proving "does not load" needs a window: 0.3 s is 30 polls.
    _, pending = await asyncio.wait(on_a + on_b, timeout=0.3)
    assert len(pending) == 20
    assert len(calls) == 1
    gate.set()
    results = await asyncio.wait_for(asyncio.gather(*on_a, *on_b), 5)

    assert len(calls) == 1
    assert all(r == {"loaded_by": calls[0]} for r in results)


async def test_a_redis_waiter_loads_itself_when_the_lock_holder_fails(
    redis_env: RedisEnv,
) -> None:
    prefix = redis_env.prefix + "cache:"
    server_a = RedisCache(await redis_env.client(), prefix=prefix, poll_interval_seconds=0.01)
    server_b = RedisCache(await redis_env.client(), prefix=prefix, poll_interval_seconds=0.01)
    failing = CountingLoader(error=TimeoutError("Plex timed out"))
    failing.gate.clear()
    on_a = asyncio.create_task(server_a.get_or_load("plex:sections", failing, 60))
    await asyncio.wait_for(failing.entered.wait(), 5)
    working = CountingLoader(["Movies"])
    on_b = asyncio.create_task(server_b.get_or_load("plex:sections", working, 60))
    failing.gate.set()

    with pytest.raises(TimeoutError):
        await asyncio.wait_for(on_a, 5)
    assert await asyncio.wait_for(on_b, 5) == ["Movies"]
    assert (failing.calls, working.calls) == (1, 1)


async def test_add_stores_only_where_nothing_live_is(cache: Cache, clock: ManualClock) -> None:
    assert await cache.add("claim:event-1", "first", ttl_seconds=10) is True
    assert await cache.add("claim:event-1", "second", ttl_seconds=10) is False
    assert await cache.get("claim:event-1") == "first"
    clock.advance(10.1)  # expired by the clock (Redis may still hold the key): free again
    assert await cache.add("claim:event-1", "third", ttl_seconds=10) is True
    assert await cache.get("claim:event-1") == "third"
    scoped = cache.namespace("plex")
    assert await scoped.add("claim:event-1", "plex's", ttl_seconds=10) is True
    with pytest.raises(ValueError, match="ttl_seconds"):
        await cache.add("claim:x", 1, ttl_seconds=0)


async def test_of_many_concurrent_adds_exactly_one_wins(cache: Cache) -> None:
    results = await asyncio.gather(*(cache.add("claim:once", n, ttl_seconds=60) for n in range(50)))
    assert results.count(True) == 1
