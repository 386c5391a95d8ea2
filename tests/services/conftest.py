"""Fixtures for the shared services: each test runs on the in-process backend and on real Redis."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from medianest_server.clock import ManualClock
from tests.conftest import REDIS_URL, service_missing


class RedisEnv:
    """Clients to the test Redis, and a key prefix unique to this test whose keys are deleted
    afterwards. Nothing connects until `client()` is called, so memory-only runs need no Redis."""

    def __init__(self) -> None:
        self.prefix = f"medianest:test:{uuid.uuid4().hex[:12]}:"
        self.clients: list[aioredis.Redis] = []

    async def client(self, *, name: str | None = None) -> aioredis.Redis:
        """A new client with its own connection pool, as a separate server instance would have."""
        # the options medianest_server/services.py builds its client with
        client = aioredis.Redis.from_url(
            REDIS_URL,
            client_name=name,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
        )
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            service_missing("Redis", exc)
        self.clients.append(client)
        return client

    async def cleanup(self) -> None:
        if not self.clients:
            return
        client = await self.client()
        keys = [key async for key in client.scan_iter(match=self.prefix + "*", count=1000)]
        if keys:
            await client.unlink(*keys)
        for each in self.clients:
            await each.aclose()


@pytest.fixture
async def redis_env() -> AsyncIterator[RedisEnv]:
    env = RedisEnv()
    yield env
    await env.cleanup()


@pytest.fixture(params=["memory", "redis"])
def backend(request: pytest.FixtureRequest) -> str:
    """Which implementation the test runs on."""
    return str(request.param)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


async def eventually(
    condition: Callable[[], Awaitable[bool]], *, within: float = 5.0, what: str = "condition"
) -> None:
    """Poll `condition` until it holds, failing after `within` seconds (a deadline, not a nap)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while not await condition():
        if loop.time() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.01)
