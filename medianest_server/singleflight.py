"""Single-flight: concurrent callers asking for the same key share one call and its outcome.

Used by the cache (`get_or_load`) and the outgoing HTTP client so that N requests arriving
together for the same thing make one upstream call, not N.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from typing import Any, Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlight(Generic[K, V]):
    """Deduplicates concurrent calls by key, within one process and one event loop.

    `SingleFlight[str, bytes]()`; then `await flight.run(key, fn)` from as many tasks as you like.
    """

    def __init__(self) -> None:
        self._calls: dict[K, asyncio.Future[V]] = {}

    def __len__(self) -> int:
        """How many calls are in flight right now."""
        return len(self._calls)

    async def run(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        """Return `await fn()`, sharing the call with every concurrent caller of the same key.

        The first caller starts `fn`; callers arriving while it runs wait for the same result or
        exception. The key is free again as soon as the call ends, so a later call runs `fn`
        afresh. Cancelling one waiter does not cancel the shared call for the others; if every
        waiter goes away the call still runs to completion (its outcome is then discarded).
        """
        call = self._calls.get(key)
        if call is None:
            call = asyncio.ensure_future(self._call(key, fn))
            call.add_done_callback(_consume_outcome)
            if not call.done():  # an eager task factory may already have finished it
                self._calls[key] = call
        return await asyncio.shield(call)

    async def _call(self, key: K, fn: Callable[[], Awaitable[V]]) -> V:
        try:
            return await fn()
        finally:
            if self._calls.get(key) is asyncio.current_task():
                del self._calls[key]


def _consume_outcome(call: asyncio.Future[Any]) -> None:
    # every waiter may have been cancelled; mark the exception retrieved so asyncio does not
    # log "exception was never retrieved" for an outcome nobody is left to receive
    if not call.cancelled():
        call.exception()
