"""Finding the code that blocks the event loop, and naming it.

One event loop serves every request, so a plugin that calls `time.sleep(2)` (or a blocking
client, or a long computation) in a handler freezes the whole server for two seconds,
`/health/live` included. Two halves find it:

- Plugin code is called through `running(call)` (a synchronous stretch) or
  `await watched(call, awaitable)` (a coroutine, each of its steps between two awaits timed):
  route handlers, hooks and widgets. A step that kept the loop for long is recorded with the
  call it belongs to; time spent in a nested plugin call counts for the innermost one only.
- `LoopLagMonitor` sleeps a short interval and measures how late it wakes. A late wake is
  matched with the steps recorded meanwhile, and each culprit is logged once (per plugin and
  handler, throttled) with the advice to use `asyncio.to_thread`. The worst recent lag is on
  the admin health page and in the diagnostics bundle.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Generator
from dataclasses import dataclass
from datetime import datetime
from types import TracebackType
from typing import Any, TypedDict, TypeVar

from aiohttp import web

from .clock import SYSTEM_CLOCK, Clock

log = logging.getLogger("medianest.looplag")

T = TypeVar("T")

# a step that kept the loop this long is worth naming (shorter ones are ordinary work)
RECORD_SECONDS = 0.05
# ... and this long is a block: logged, counted, shown
BLOCK_SECONDS = 0.5
MONITOR_INTERVAL_SECONDS = 0.1
WORST_WINDOW_SECONDS = 15 * 60
# the same culprit is logged again at most this often
REPEAT_LOG_SECONDS = 60 * 60
ADVICE = "move blocking work to asyncio.to_thread"


@dataclass(frozen=True)
class PluginCall:
    """Plugin code about to run: `plugin`, what kind (`route`, `hook`, `widget`, `health
    check`) and which one (`GET /youtube/`, `medianest_search`, the widget id)."""

    plugin: str
    kind: str
    name: str

    def __str__(self) -> str:
        return f"plugin {self.plugin} {self.kind} {self.name}"


@dataclass(frozen=True)
class _Step:
    call: PluginCall
    seconds: float
    ended: float  # perf_counter


class _Steps(threading.local):
    """Per thread, hence per event loop: the long steps seen lately and the time nested calls
    took inside the step running now."""

    def __init__(self) -> None:
        self.long: deque[_Step] = deque(maxlen=64)
        self.claimed = 0.0


_steps = _Steps()


class running:
    """Time a synchronous stretch of plugin code (one call of a plain function, one step of a
    coroutine); a long one is recorded for the monitor. Never hold it across an `await`."""

    __slots__ = ("_call", "_outer", "_started")

    def __init__(self, call: PluginCall) -> None:
        self._call = call
        self._outer = 0.0
        self._started = 0.0

    def __enter__(self) -> None:
        self._outer, _steps.claimed = _steps.claimed, 0.0
        self._started = time.perf_counter()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        ended = time.perf_counter()
        elapsed = ended - self._started
        own = elapsed - _steps.claimed  # nested plugin calls answer for their own time
        _steps.claimed = self._outer + elapsed
        if own >= RECORD_SECONDS:
            _steps.long.append(_Step(self._call, own, ended))


class _Watched(Awaitable[T]):
    __slots__ = ("_awaitable", "_call")

    def __init__(self, call: PluginCall, awaitable: Awaitable[T]) -> None:
        self._call = call
        self._awaitable = awaitable

    def __await__(self) -> Generator[Any, Any, T]:
        steps = self._awaitable.__await__()
        sent: Any = None
        error: BaseException | None = None
        while True:
            with running(self._call):
                try:
                    if error is None:
                        yielded = steps.send(sent)
                    else:
                        yielded, error = steps.throw(error), None
                except StopIteration as stop:
                    return stop.value  # type: ignore[no-any-return]
            try:
                sent = yield yielded
            except GeneratorExit:
                close = getattr(steps, "close", None)
                if close is not None:
                    close()
                raise
            except BaseException as exc:  # cancellation included: the plugin code sees it
                sent, error = None, exc


def watched(call: PluginCall, awaitable: Awaitable[T]) -> Awaitable[T]:
    """`await watched(call, coroutine)`: run it as usual, each step between awaits timed."""
    return _Watched(call, awaitable)


@dataclass(frozen=True)
class LagSample:
    seconds: float
    culprit: str | None
    at: datetime
    seen: float  # perf_counter


class BlockedCall(TypedDict):
    call: str
    times: int
    worst_ms: float


class LagSummary(TypedDict):
    """What the admin health page and the diagnostics bundle say about the event loop."""

    worst_ms: float
    worst_culprit: str | None
    worst_at: str | None
    window_seconds: int
    blocked: list[BlockedCall]


class LoopLagMonitor:
    """Measures how late the event loop wakes it and names the plugin code that made it late."""

    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        interval_seconds: float = MONITOR_INTERVAL_SECONDS,
        block_seconds: float = BLOCK_SECONDS,
    ) -> None:
        self._clock = clock
        self.interval_seconds = interval_seconds
        self.block_seconds = block_seconds
        self._samples: deque[LagSample] = deque(maxlen=256)
        self._blocked: dict[PluginCall | None, BlockedCall] = {}
        self._logged: dict[PluginCall | None, float] = {}

    async def run(self) -> None:
        """Until cancelled: sleep, measure the lateness, name the culprits."""
        seen_until = time.perf_counter()
        while True:
            asleep = time.perf_counter()
            await asyncio.sleep(self.interval_seconds)
            woke = time.perf_counter()
            steps = [s for s in list(_steps.long) if seen_until < s.ended <= woke]
            seen_until = woke
            self.observe(woke - asleep - self.interval_seconds, steps, woke)

    def observe(self, lag: float, steps: list[_Step], now: float) -> None:
        blocks = [s for s in steps if s.seconds >= self.block_seconds]
        for step in blocks:
            self._count(step.call, step.seconds, now)
        if lag >= self.block_seconds and not blocks:
            self._count(None, lag, now)
        if lag >= RECORD_SECONDS:
            culprit = max(steps, key=lambda s: s.seconds).call if steps else None
            self._samples.append(
                LagSample(lag, str(culprit) if culprit else None, self._clock.now(), now)
            )

    def _count(self, call: PluginCall | None, seconds: float, now: float) -> None:
        name = str(call) if call is not None else "code outside any plugin call"
        entry = self._blocked.setdefault(call, BlockedCall(call=name, times=0, worst_ms=0.0))
        entry["times"] += 1
        entry["worst_ms"] = max(entry["worst_ms"], round(seconds * 1000, 1))
        last = self._logged.get(call)
        if last is not None and now - last < REPEAT_LOG_SECONDS:
            return
        self._logged[call] = now
        extra: dict[str, Any] = {"blocked_ms": round(seconds * 1000, 1)}
        if call is not None:
            extra.update(plugin=call.plugin, handler=f"{call.kind} {call.name}")
        log.warning("%s blocked the event loop for %.1f s; %s", name, seconds, ADVICE, extra=extra)

    def worst(self) -> LagSample | None:
        """The largest lag of the last `WORST_WINDOW_SECONDS`, or None when there was none."""
        since = time.perf_counter() - WORST_WINDOW_SECONDS
        recent = [s for s in self._samples if s.seen >= since]
        return max(recent, key=lambda s: s.seconds) if recent else None

    def summary(self) -> LagSummary:
        worst = self.worst()
        return LagSummary(
            worst_ms=round(worst.seconds * 1000, 1) if worst else 0.0,
            worst_culprit=worst.culprit if worst else None,
            worst_at=worst.at.isoformat() if worst else None,
            window_seconds=WORST_WINDOW_SECONDS,
            blocked=[entry.copy() for entry in self._blocked.values()],
        )


LOOP_LAG = web.AppKey("loop_lag", LoopLagMonitor)


async def watch_event_loop(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: the app's lag monitor runs while the app does."""
    task = asyncio.create_task(app[LOOP_LAG].run(), name="event loop lag monitor")
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
