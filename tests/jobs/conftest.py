"""Fixtures for the job queue, leader election and background task tests: a migrated database
on both backends, Redis clients, and a deadline-bound poll."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from medianest_server.clock import ManualClock
from medianest_server.db import (
    Database,
)
from tests.conftest import REDIS_URL, service_missing


async def make_user(db: Database, username: str) -> int:
    """A plain user row (jobs may belong to a user); returns its id."""
    now = ManualClock().now()
    user_id = await db.fetch_val(
        "INSERT INTO users (username, role, created_at, updated_at) "
        "VALUES (:username, 'user', :now, :now) RETURNING id",
        {"username": username, "now": now},
    )
    return int(user_id)


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


class RedisClients:
    """New Redis clients, each with its own connection pool (as separate instances have), and
    a key prefix unique to the test whose keys are deleted afterwards."""

    def __init__(self) -> None:
        self.prefix = f"medianest:test:{uuid.uuid4().hex[:12]}:"
        self.clients: list[aioredis.Redis] = []

    async def client(self) -> aioredis.Redis:
        client = aioredis.Redis.from_url(REDIS_URL)
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            service_missing("Redis", exc)
        self.clients.append(client)
        return client

    async def close(self) -> None:
        if not self.clients:
            return
        keys = [key async for key in self.clients[0].scan_iter(match=self.prefix + "*")]
        if keys:
            await self.clients[0].unlink(*keys)
        for client in self.clients:
            await client.aclose()


@pytest.fixture
async def redis_clients() -> AsyncIterator[RedisClients]:
    clients = RedisClients()
    yield clients
    await clients.close()


async def always(
    condition: Callable[[], Awaitable[bool]], *, for_seconds: float, what: str = "condition"
) -> None:
    """Check that `condition` holds at every poll for `for_seconds` (an invariant over time)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + for_seconds
    while loop.time() < deadline:
        if not await condition():
            pytest.fail(f"{what} stopped holding")
        await asyncio.sleep(0.01)
