"""A test plugin: `medianest_user_removed` waits (at most a second) until a second removal has
started, so two deletions are certainly under way together. Call `reset()` in the test first."""

from __future__ import annotations

import asyncio

from medianest_server.plugin_api import User, hookimpl

WAIT_SECONDS = 1.0
removing: list[int] = []
_both_started: asyncio.Event | None = None


def reset() -> None:
    global _both_started
    removing.clear()
    _both_started = asyncio.Event()


@hookimpl
async def medianest_user_removed(user: User) -> None:
    assert _both_started is not None, "call removal_barrier.reset() in the test"
    removing.append(user.id)
    if len(removing) >= 2:
        _both_started.set()
    try:
        async with asyncio.timeout(WAIT_SECONDS):
            await _both_started.wait()
    except TimeoutError:
        pass  # a correct implementation lets only one removal of the last admins through
