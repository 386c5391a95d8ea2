"""Fixtures for the shared services: each test runs on the in-process backend and on real Redis."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from medianest_server.clock import ManualClock
from tests.conftest import RedisEnv, redis_env  # noqa: F401  (the shared fixture)


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
