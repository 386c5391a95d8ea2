"""Fixtures for the job queue, leader election and background task tests: a migrated database
on both backends, Redis clients, and a deadline-bound poll."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from medianest_server.clock import ManualClock
from medianest_server.db import (
    Database,
)


async def make_user(db: Database, username: str) -> int:
    """A plain user row (jobs may belong to a user); returns its id."""
    now = ManualClock().now()
    user_id = await db.fetch_val(
        "INSERT INTO users (username, role, created_at, updated_at) "
        "VALUES (:username, 'user', :now, :now) RETURNING id",
        {"username": username, "now": now},
    )
    return int(user_id)


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
