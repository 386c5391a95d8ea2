"""Running the health checks plugins declare, each alone, each within its own timeout.

Each check runs as a task of its own and the caller stops waiting at its deadline: a check that
hangs, even one that swallows the cancellation meant to stop it, is reported `down` on time and
never awaited past it. Such a stuck task is cancelled again (and logged) on the next run instead
of being started twice, and at shutdown it is given a short grace and then left behind.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from datetime import datetime, timedelta

from .clock import SYSTEM_CLOCK, Clock
from .looplag import PluginCall, watched
from .plugins.types import HealthCheck, HealthResult, HealthState

log = logging.getLogger("medianest.health")

# how long the admin health page shows a result before running the check again ("Test
# connection" always runs it now)
PAGE_MAX_AGE_SECONDS = 10.0
# at shutdown, how long cancelled checks get to end before they are left behind
SHUTDOWN_GRACE_SECONDS = 1.0


@dataclass(frozen=True)
class CheckOutcome:
    plugin: str
    name: str
    status: HealthState
    message: str
    latency_ms: float | None
    checked_at: datetime


@dataclass
class _Running:
    """A check's task and when the caller stops waiting for it."""

    task: asyncio.Task[HealthResult]
    started: float  # perf_counter
    deadline: float
    cancelled: bool = False
    reported_stuck: bool = False


class HealthRegistry:
    """The checks of every active plugin and their last outcome (for the admin health page)."""

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._checks: list[tuple[str, HealthCheck]] = []
        self.last: dict[tuple[str, str], CheckOutcome] = {}
        self._running: dict[tuple[str, str], _Running] = {}
        self._clock = clock

    def add(self, plugin: str, check: HealthCheck) -> None:
        self._checks.append((plugin, check))

    def remove(self, plugin: str) -> None:
        """Forget a plugin's checks and their last outcomes (it is being restarted)."""
        self._checks = [(p, c) for p, c in self._checks if p != plugin]
        self.last = {key: outcome for key, outcome in self.last.items() if key[0] != plugin}
        for key in [key for key in self._running if key[0] == plugin]:
            self._running.pop(key).task.cancel()

    def checks(self, plugin: str | None = None) -> list[tuple[str, HealthCheck]]:
        return [(p, c) for p, c in self._checks if plugin is None or p == plugin]

    async def run(
        self, plugin: str | None = None, *, max_age_seconds: float = 0.0
    ) -> list[CheckOutcome]:
        """Run the checks (of one plugin, or all) concurrently; a hang is `down`, not a wait.

        An outcome younger than `max_age_seconds` is given again instead of running its check
        (the health page passes `PAGE_MAX_AGE_SECONDS`; an explicit test passes nothing)."""
        return list(
            await asyncio.gather(
                *(self._outcome(p, c, max_age_seconds) for p, c in self.checks(plugin))
            )
        )

    async def _outcome(self, plugin: str, check: HealthCheck, max_age: float) -> CheckOutcome:
        previous = self.last.get((plugin, check.name))
        if previous is not None and max_age > 0:
            age = self._clock.now() - previous.checked_at
            if age < timedelta(seconds=max_age):
                return previous
        return await self._run_one(plugin, check)

    async def _run_one(self, plugin: str, check: HealthCheck) -> CheckOutcome:
        key = (plugin, check.name)
        running = self._running.get(key)
        if running is None or running.task.done():
            running = self._start(plugin, check)
        remaining = running.deadline - time.perf_counter()
        if remaining > 0:
            await asyncio.wait({running.task}, timeout=remaining)
        if running.task.done():
            self._running.pop(key, None)
            result = _result_of(running.task)
        else:
            result = HealthResult("down", f"timed out after {check.timeout_seconds:g} s")
            self._cancel_stuck(plugin, check, running)
        latency = result.latency_ms
        if latency is None:
            latency = round((time.perf_counter() - running.started) * 1000, 2)
        outcome = CheckOutcome(
            plugin, check.name, result.status, result.message, latency, self._clock.now()
        )
        previous = self.last.get(key)
        if result.status != "up" and (previous is None or previous.status == "up"):
            log.warning(
                "health check %s: %s",
                result.status,
                result.message,
                extra={"plugin": plugin, "check": check.name},
            )
        self.last[key] = outcome
        return outcome

    def _start(self, plugin: str, check: HealthCheck) -> _Running:
        call = PluginCall(plugin, "health check", check.name)
        task = asyncio.create_task(
            _checked(call, check), name=f"health check {plugin} {check.name}"
        )
        started = time.perf_counter()
        running = _Running(task, started, started + check.timeout_seconds)
        self._running[(plugin, check.name)] = running
        return running

    def _cancel_stuck(self, plugin: str, check: HealthCheck, running: _Running) -> None:
        """Cancel an overrunning check; one still running after a cancellation ignores it."""
        if running.cancelled and not running.reported_stuck:
            running.reported_stuck = True
            log.warning(
                "health check still running after it was cancelled (it swallows "
                "cancellation); cancelling it again, never waiting for it",
                extra={"plugin": plugin, "check": check.name},
            )
        running.cancelled = True
        running.task.cancel()

    async def close(self) -> None:
        """At shutdown: cancel every running check, wait a short grace, leave the rest behind."""
        running, self._running = list(self._running.items()), {}
        for _, entry in running:
            entry.task.cancel()
        tasks = {entry.task for _, entry in running}
        if not tasks:
            return
        _, pending = await asyncio.wait(tasks, timeout=SHUTDOWN_GRACE_SECONDS)
        for (plugin, name), entry in running:
            if entry.task in pending:
                log.warning(
                    "health check ignored cancellation at shutdown; left behind",
                    extra={"plugin": plugin, "check": name},
                )


async def _checked(call: PluginCall, check: HealthCheck) -> HealthResult:
    try:
        result = await watched(call, check.check())
    except Exception as exc:
        return HealthResult("down", f"{type(exc).__name__}: {exc}")
    if not isinstance(result, HealthResult):
        return HealthResult("down", f"returned {type(result).__name__}, not HealthResult")
    return result


def _result_of(task: asyncio.Task[HealthResult]) -> HealthResult:
    if task.cancelled():
        return HealthResult("down", "cancelled")
    return task.result()  # _checked turns every exception into a result
