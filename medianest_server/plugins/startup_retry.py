""" "Not ready yet": a plugin whose upstream is not reachable at start is started again later.

A plugin's `medianest_startup` raises :class:`PluginNotReady` ("Plex is not reachable yet")
when what it needs is not there now. The loader marks it `retrying` with that reason;
:class:`StartupRetries` then tries its startup again in the background, 5 s after the last
attempt, doubling up to 5 min (each wait ± 10 % so instances spread out), until it starts, fails
for another reason, its settings change, or the server stops. No restart is ever needed when
the upstream comes up after MediaNest.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import TYPE_CHECKING

from aiohttp import web

from ..aio import cancel_and_wait
from ..clock import SYSTEM_CLOCK, Clock

if TYPE_CHECKING:
    from .loader import PluginRecord

log = logging.getLogger("medianest.plugins")

FIRST_DELAY_SECONDS = 5.0
MAX_DELAY_SECONDS = 300.0
JITTER_FRACTION = 0.1


class PluginNotReady(Exception):
    """Raise from `medianest_startup` when the upstream is not reachable now.

    The message is shown to people as is, so write it in plain words for them:
    `raise PluginNotReady("Plex is not reachable yet")`. The core tries the startup again with
    backoff and shows the plugin as `retrying` with this reason until it starts.
    """

    def __init__(self, reason: str = "") -> None:
        super().__init__(reason)
        self.reason = reason


def retry_delay(attempt: int, rng: random.Random) -> float:
    """Seconds to wait before retry number `attempt` (1: the first retry): 5 s doubling to
    5 min, ± 10 %."""
    base = min(MAX_DELAY_SECONDS, FIRST_DELAY_SECONDS * 2.0 ** min(attempt - 1, 30))
    return base * rng.uniform(1 - JITTER_FRACTION, 1 + JITTER_FRACTION)


class StartupRetries:
    """The background attempts of every `retrying` plugin of one app, one asyncio task each.

    `clock`, `sleep` and `rng` are injectable so tests run without real waiting.
    """

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        rng: random.Random | None = None,
    ) -> None:
        self._clock = clock
        self._sleep = sleep
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._loops: dict[str, asyncio.Task[None]] = {}

    def schedule(
        self,
        record: PluginRecord,
        attempt: Callable[[], Awaitable[None]],
        lock: asyncio.Lock,
    ) -> None:
        """Keep calling `attempt` (which runs the plugin's startup again) while the plugin is
        `retrying`, under `lock` (the plugin's settings lock), waiting longer each time."""
        if record.name in self._loops and not self._loops[record.name].done():
            return
        self._loops[record.name] = asyncio.create_task(
            self._loop(record, attempt, lock), name=f"startup retries {record.name}"
        )

    async def cancel(self, name: str) -> None:
        """Stop retrying one plugin (its settings changed, or it is being stopped)."""
        loop = self._loops.pop(name, None)
        if loop is not None:
            await cancel_and_wait([loop], within=10.0)

    async def stop(self) -> None:
        """Stop every retry loop (the app is stopping), an attempt in progress included."""
        loops, self._loops = list(self._loops.values()), {}
        await cancel_and_wait(loops, within=10.0)

    async def _loop(
        self,
        record: PluginRecord,
        attempt: Callable[[], Awaitable[None]],
        lock: asyncio.Lock,
    ) -> None:
        while record.status == "retrying":
            delay = retry_delay(record.attempts, self._rng)
            record.next_attempt_at = self._clock.now() + timedelta(seconds=delay)
            await self._sleep(delay)
            async with lock:
                if record.status != "retrying":
                    return  # its settings changed meanwhile
                try:
                    await attempt()
                except Exception:
                    # attempt() contains the plugin's own failures; this is a bug of ours
                    log.exception("startup retry failed", extra={"plugin": record.name})
                    return
        record.next_attempt_at = None


STARTUP_RETRIES = web.AppKey("startup_retries", StartupRetries)
