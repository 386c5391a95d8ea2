"""Rate limits, on MemoryRateLimiter and on RedisRateLimiter against real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from medianest_server.clock import ManualClock
from medianest_server.ratelimit import (
    MemoryRateLimiter,
    RateLimiter,
    RateLimitResult,
    RedisRateLimiter,
)
from tests.services.conftest import RedisEnv

# the sign-in rule used below: 5 attempts per 10 s, so one more every 2 s
LIMIT, WINDOW = 5, 10.0


@pytest.fixture
async def limiter(
    backend: str, redis_env: RedisEnv, clock: ManualClock
) -> AsyncIterator[RateLimiter]:
    if backend == "memory":
        made: RateLimiter = MemoryRateLimiter(clock=clock)
    else:
        client = await redis_env.client()
        made = RedisRateLimiter(client, prefix=redis_env.prefix + "rl:", clock=clock)
    yield made
    await made.close()


async def sign_in(limiter: RateLimiter, key: str) -> RateLimitResult:
    return await limiter.hit(key, limit=LIMIT, window_seconds=WINDOW)


async def sign_ins(limiter: RateLimiter, key: str, n: int) -> list[RateLimitResult]:
    return [await sign_in(limiter, key) for _ in range(n)]


async def peek(limiter: RateLimiter, key: str) -> RateLimitResult:
    return await limiter.peek(key, limit=LIMIT, window_seconds=WINDOW)


async def test_allows_the_limit_then_refuses_with_retry_after(limiter: RateLimiter) -> None:
    allowed = await sign_ins(limiter, "login:alice", 5)
    assert [r.allowed for r in allowed] == [True] * 5
    assert [r.remaining for r in allowed] == [4, 3, 2, 1, 0]
    assert allowed[0].headers() == {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "4",
        "X-RateLimit-Reset": "2",
    }
    assert allowed[0].retry_after == 0

    refused = await sign_in(limiter, "login:alice")
    assert not refused.allowed
    assert refused.remaining == 0
    assert refused.retry_after == pytest.approx(2.0)  # one unit frees up every 10 s / 5
    assert refused.reset_after == pytest.approx(10.0)
    assert refused.headers() == {
        "X-RateLimit-Limit": "5",
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": "10",
        "Retry-After": "2",
    }


async def test_recovers_as_the_window_slides(limiter: RateLimiter, clock: ManualClock) -> None:
    await sign_ins(limiter, "login:alice", 5)
    refused = await sign_in(limiter, "login:alice")

    clock.advance(refused.retry_after)
    assert [r.allowed for r in await sign_ins(limiter, "login:alice", 2)] == [True, False]

    clock.advance(10)
    after_window = await sign_ins(limiter, "login:alice", 6)
    assert [r.allowed for r in after_window] == [True] * 5 + [False]


async def test_refused_hits_count_nothing(limiter: RateLimiter, clock: ManualClock) -> None:
    await sign_ins(limiter, "api:token1", 5)
    assert not any(r.allowed for r in await sign_ins(limiter, "api:token1", 20))
    clock.advance(2)
    assert (await sign_in(limiter, "api:token1")).allowed


async def test_peek_counts_nothing(limiter: RateLimiter) -> None:
    for _ in range(10):
        peeked = await peek(limiter, "login:bob")
        assert (peeked.allowed, peeked.remaining, peeked.retry_after) == (True, 5, 0)
    await sign_ins(limiter, "login:bob", 5)

    blocked = await peek(limiter, "login:bob")
    assert not blocked.allowed
    assert blocked.retry_after == pytest.approx(2.0)
    assert blocked.headers()["Retry-After"] == "2"
    assert await peek(limiter, "login:bob") == blocked


async def test_reset_gives_the_full_budget_back(limiter: RateLimiter) -> None:
    await sign_ins(limiter, "login:carol", 5)
    await limiter.reset("login:carol")
    await limiter.reset("login:never-limited")
    result = await sign_in(limiter, "login:carol")
    assert (result.allowed, result.remaining) == (True, 4)


async def test_keys_have_separate_budgets(limiter: RateLimiter) -> None:
    await sign_ins(limiter, "login:alice", 5)
    assert (await sign_in(limiter, "login:bob")).allowed


async def test_a_hit_may_cost_more_than_one(limiter: RateLimiter) -> None:
    first, second, third = [
        await limiter.hit("search:alice", limit=10, window_seconds=60, cost=4) for _ in range(3)
    ]
    assert (first.remaining, second.remaining) == (6, 2)
    assert not third.allowed
    assert third.remaining == 2
    assert third.retry_after == pytest.approx(12.0)  # two more units: 2 x 6 s
    fits = await limiter.hit("search:alice", limit=10, window_seconds=60, cost=2)
    assert (fits.allowed, fits.remaining) == (True, 0)


async def test_impossible_arguments_are_refused(limiter: RateLimiter) -> None:
    with pytest.raises(ValueError, match="cost"):
        await limiter.hit("k", limit=5, window_seconds=10, cost=6)
    with pytest.raises(ValueError, match="limit"):
        await limiter.hit("k", limit=0, window_seconds=10)
    with pytest.raises(ValueError, match="window_seconds"):
        await limiter.peek("k", limit=5, window_seconds=0)


async def test_two_redis_limiters_share_one_budget(redis_env: RedisEnv, clock: ManualClock) -> None:
    prefix = redis_env.prefix + "rl:"
    server_a = RedisRateLimiter(await redis_env.client(), prefix=prefix, clock=clock)
    server_b = RedisRateLimiter(await redis_env.client(), prefix=prefix, clock=clock)

    results = await asyncio.gather(
        *(
            server.hit("api:token1", limit=20, window_seconds=60)
            for server in [server_a, server_b] * 25
        )
    )
    assert sum(r.allowed for r in results) == 20
    assert not (await server_a.peek("api:token1", limit=20, window_seconds=60)).allowed
    await server_b.reset("api:token1")
    assert (await server_a.hit("api:token1", limit=20, window_seconds=60)).allowed


async def test_the_memory_limiter_forgets_idle_keys(clock: ManualClock) -> None:
    limiter = MemoryRateLimiter(clock=clock)
    for n in range(5000):
        await sign_in(limiter, f"ip:{n}")
    clock.advance(10)  # every key has its full budget back: keeping them is pointless
    for n in range(5000):
        await limiter.hit(f"ip:other:{n}", limit=5, window_seconds=1.0)
        clock.advance(0.001)
    assert len(limiter) < 3000
