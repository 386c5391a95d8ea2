"""Health checks with two faults: one swallows the cancellation meant to stop it and keeps
going (a retry loop that counts it as one more failure); one is slow, and counts its runs."""

from __future__ import annotations

import asyncio
import threading

from medianest_server.plugin_api import HealthCheck, HealthResult, hookimpl

# set by a test to let the stubborn check end at last (not bound to any event loop)
let_go = threading.Event()
cancellations: list[int] = []
slow_runs: list[int] = []


@hookimpl
def medianest_health_checks() -> list[HealthCheck]:
    async def stubborn() -> HealthResult:
        while not let_go.is_set():
            try:
                await asyncio.sleep(0.05)
            except asyncio.CancelledError:  # the fault under test
                cancellations.append(len(cancellations))
        return HealthResult("up", "let go")

    async def slow() -> HealthResult:
        slow_runs.append(len(slow_runs))
        await asyncio.sleep(0.05)
        return HealthResult("up", f"run {len(slow_runs)}")

    return [
        HealthCheck("stubborn", stubborn, timeout_seconds=0.2),
        HealthCheck("slow", slow, timeout_seconds=2.0),
    ]
