"""An injectable `sleep` the test drives: each call waits until `step()` lets it go, moving the
ManualClock by the requested seconds, so code that backs off never waits in real time."""

from __future__ import annotations

import asyncio

from medianest_server.clock import ManualClock


class SteppedSleep:
    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._pending: list[tuple[float, asyncio.Future[None]]] = []
        self._changed = asyncio.Event()

    async def __call__(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        self._pending.append((seconds, done))
        self._changed.set()
        await done

    def waiting(self) -> list[float]:
        """The seconds each sleep waiting now asked for (cancelled ones dropped)."""
        self._pending = [(s, d) for s, d in self._pending if not d.done()]
        return [s for s, _ in self._pending]

    async def step(self, within: float = 5.0) -> float:
        """Wait for the oldest sleep still waiting, end it, and return how long it asked for."""
        async with asyncio.timeout(within):
            while not self.waiting():
                self._changed.clear()
                await self._changed.wait()
        seconds, done = self._pending.pop(0)
        self.clock.advance(seconds)
        done.set_result(None)
        return seconds
