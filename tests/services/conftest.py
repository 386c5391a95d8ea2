"""Fixtures for the shared services: each test runs on the in-process backend and on real Redis."""

from __future__ import annotations

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
