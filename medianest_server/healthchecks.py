"""Running the health checks plugins declare, each alone, each within its own timeout."""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime

from .clock import SYSTEM_CLOCK, Clock
from .plugins.types import HealthCheck, HealthResult, HealthState

log = logging.getLogger("medianest.health")


@dataclass(frozen=True)
class CheckOutcome:
    plugin: str
    name: str
    status: HealthState
    message: str
    latency_ms: float | None
    checked_at: datetime


class HealthRegistry:
    """The checks of every active plugin and their last outcome (for the admin health page)."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._checks: list[tuple[str, HealthCheck]] = []
        self.last: dict[tuple[str, str], CheckOutcome] = {}
        self._clock = clock

    def add(self, plugin: str, check: HealthCheck) -> None:
        self._checks.append((plugin, check))

    def remove(self, plugin: str) -> None:
        """Forget a plugin's checks and their last outcomes (it is being restarted)."""
        self._checks = [(p, c) for p, c in self._checks if p != plugin]
        self.last = {key: outcome for key, outcome in self.last.items() if key[0] != plugin}

    def checks(self, plugin: str | None = None) -> list[tuple[str, HealthCheck]]:
        return [(p, c) for p, c in self._checks if plugin is None or p == plugin]

    async def run(self, plugin: str | None = None) -> list[CheckOutcome]:
        """Run the checks (of one plugin, or all) concurrently; a hang is `down`, not a wait."""
        return list(await asyncio.gather(*(self._run_one(p, c) for p, c in self.checks(plugin))))

    async def _run_one(self, plugin: str, check: HealthCheck) -> CheckOutcome:
        started = time.perf_counter()
        try:
            async with asyncio.timeout(check.timeout_seconds):
                result = await check.check()
            if not isinstance(result, HealthResult):
                result = HealthResult("down", f"returned {type(result).__name__}, not HealthResult")
        except TimeoutError:
            result = HealthResult("down", f"timed out after {check.timeout_seconds:g} s")
        except Exception as exc:
            result = HealthResult("down", f"{type(exc).__name__}: {exc}")
        latency = result.latency_ms
        if latency is None:
            latency = round((time.perf_counter() - started) * 1000, 2)
        outcome = CheckOutcome(
            plugin, check.name, result.status, result.message, latency, self._clock.now()
        )
        previous = self.last.get((plugin, check.name))
        if result.status != "up" and (previous is None or previous.status == "up"):
            log.warning(
                "health check %s: %s",
                result.status,
                result.message,
                extra={"plugin": plugin, "check": check.name},
            )
        self.last[(plugin, check.name)] = outcome
        return outcome
