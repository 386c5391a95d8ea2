"""Periodic background tasks: polling, sync, retention. Each runs alone, with jitter and backoff.

Plugins return :class:`Task` objects from ``medianest_background_tasks``; the core adds them to
one :class:`TaskRunner` per instance. Every task is its own asyncio task, so a slow or broken one
never delays another. A failing task (exception or timeout) waits ``interval * 2**n`` (n: failures
in a row, capped at ``max_backoff_seconds``) before its next run, and is logged once when it starts
failing and once when it recovers, not on every failure. A ``leader_only`` task runs on the one
instance that holds leadership (see :mod:`medianest_server.leader`) and skips its turns elsewhere.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from medianest_server.aio import cancel_and_wait
from medianest_server.clock import SYSTEM_CLOCK, Clock
from medianest_server.leader import LeaderElection

logger = logging.getLogger("medianest.tasks")

#: Exponent cap for the backoff (2**30 times any interval is past any sane max_backoff).
_MAX_EXPONENT = 30


@dataclass(frozen=True)
class Task:
    """A coroutine function to run every ``interval_seconds``.

    Each wait is ``interval * uniform(1 - jitter_fraction, 1 + jitter_fraction)`` so instances and
    tasks started together spread out. A run longer than ``timeout_seconds`` (default: the
    interval) is cancelled and counts as a failure. ``run_at_start``: first run at start rather
    than after one interval.
    """

    name: str
    interval_seconds: float
    run: Callable[[], Awaitable[None]]
    leader_only: bool = False
    jitter_fraction: float = 0.1
    run_at_start: bool = True
    max_backoff_seconds: float = 600.0
    timeout_seconds: float | None = None

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a task needs a name")
        if self.interval_seconds <= 0:
            raise ValueError(f"task {self.name!r}: interval_seconds must be positive")
        if not 0 <= self.jitter_fraction < 1:
            raise ValueError(f"task {self.name!r}: jitter_fraction must be in [0, 1)")
        if self.timeout_seconds is not None and self.timeout_seconds <= 0:
            raise ValueError(f"task {self.name!r}: timeout_seconds must be positive")

    @property
    def timeout(self) -> float:
        return self.interval_seconds if self.timeout_seconds is None else self.timeout_seconds


@dataclass(frozen=True)
class TaskStatus:
    """What the admin pages show about one task."""

    name: str
    owner: str
    leader_only: bool
    runs: int
    failures: int
    consecutive_failures: int
    last_run_at: datetime | None
    last_success_at: datetime | None
    last_error: str | None
    next_run_at: datetime | None
    running: bool


@dataclass
class _Entry:
    task: Task
    owner: str
    runs: int = 0
    failures: int = 0
    consecutive_failures: int = 0
    last_run_at: datetime | None = None
    last_success_at: datetime | None = None
    last_error: str | None = None
    next_run_at: datetime | None = None
    running: bool = False
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    handle: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"{self.owner}/{self.task.name}"

    def status(self) -> TaskStatus:
        return TaskStatus(
            name=self.task.name,
            owner=self.owner,
            leader_only=self.task.leader_only,
            runs=self.runs,
            failures=self.failures,
            consecutive_failures=self.consecutive_failures,
            last_run_at=self.last_run_at,
            last_success_at=self.last_success_at,
            last_error=self.last_error,
            next_run_at=self.next_run_at,
            running=self.running,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class TaskRunner:
    """Runs the periodic tasks of one instance.

    ``leader`` decides leader-only tasks; the runner only asks it (``is_leader()``), starting and
    stopping it is up to its owner. ``clock``, ``rng`` and ``sleep`` are injectable so tests run
    without real waiting.
    """

    def __init__(
        self,
        *,
        leader: LeaderElection,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._leader = leader
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._sleep = sleep
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._started = False

    def add(self, task: Task, *, owner: str) -> None:
        """Add ``task`` of ``owner`` (a plugin name, or ``core``); names are unique per owner.

        Added while the runner is started, the task starts at once.
        """
        key = (owner, task.name)
        if key in self._entries:
            raise ValueError(f"{owner} already has a background task named {task.name!r}")
        entry = _Entry(task=task, owner=owner)
        self._entries[key] = entry
        if self._started:
            self._launch(entry)

    async def remove_owner(self, owner: str) -> None:
        """Stop and forget every task of ``owner`` (a plugin being restarted), waiting for a
        run in progress to end."""
        entries = [e for key, e in self._entries.items() if key[0] == owner]
        for entry in entries:
            del self._entries[(owner, entry.task.name)]
        await cancel_and_wait([e.handle for e in entries if e.handle is not None], within=10.0)

    async def start(self) -> None:
        """Start every task (each as its own asyncio task)."""
        if self._started:
            return
        self._started = True
        for entry in self._entries.values():
            self._launch(entry)

    async def stop(self) -> None:
        """Cancel every task, a run in progress included, and wait until they have ended."""
        self._started = False
        handles = [entry.handle for entry in self._entries.values() if entry.handle is not None]
        for entry in self._entries.values():
            entry.handle = None
            entry.next_run_at = None
        await cancel_and_wait(handles, within=10.0)

    def status(self) -> list[TaskStatus]:
        """Every task's state, sorted by owner and name."""
        return [self._entries[key].status() for key in sorted(self._entries)]

    async def run_now(self, owner: str, name: str) -> None:
        """Run the task now and wait for it (a "run now" button), whether or not this instance
        leads. Its outcome is recorded and logged like a scheduled run's; it does not raise
        the task's error. Raises ``KeyError`` for an unknown task."""
        entry = self._entries.get((owner, name))
        if entry is None:
            raise KeyError(f"no background task {owner}/{name}")
        await self._run_once(entry)

    # -- one task ----------------------------------------------------------------------------

    def _launch(self, entry: _Entry) -> None:
        entry.handle = asyncio.create_task(self._loop(entry), name=f"task {entry.label}")

    async def _loop(self, entry: _Entry) -> None:
        task = entry.task
        if not task.run_at_start:
            await self._wait(entry, self._delay(entry))
        while True:
            if task.leader_only and not self._leader.is_leader():
                delay = self._jitter(task, task.interval_seconds)  # a skipped turn, no failure
            else:
                await self._run_once(entry)
                delay = self._delay(entry)
            await self._wait(entry, delay)

    async def _wait(self, entry: _Entry, delay: float) -> None:
        entry.next_run_at = self._clock.now() + timedelta(seconds=delay)
        await self._sleep(delay)

    def _jitter(self, task: Task, seconds: float) -> float:
        if not task.jitter_fraction:
            return seconds
        return seconds * self._rng.uniform(1 - task.jitter_fraction, 1 + task.jitter_fraction)

    def _delay(self, entry: _Entry) -> float:
        """The wait before the next run: the interval, or the backoff after failures."""
        task = entry.task
        if not entry.consecutive_failures:
            return self._jitter(task, task.interval_seconds)
        exponent = min(entry.consecutive_failures, _MAX_EXPONENT)
        # never sooner than the interval itself, whatever max_backoff_seconds says
        cap = max(task.max_backoff_seconds, task.interval_seconds)
        return min(cap, self._jitter(task, task.interval_seconds * 2.0**exponent))

    async def _run_once(self, entry: _Entry) -> None:
        async with entry.lock:  # a "run now" never overlaps a scheduled run
            entry.running = True
            entry.next_run_at = None
            entry.last_run_at = self._clock.now()
            entry.runs += 1
            error: str | None = None
            exc_info: BaseException | None = None
            try:
                async with asyncio.timeout(entry.task.timeout) as deadline:
                    await entry.task.run()
            except TimeoutError as exc:
                if deadline.expired():
                    error = f"timed out after {entry.task.timeout:g} s"
                else:
                    error, exc_info = _describe(exc), exc
            except asyncio.CancelledError as exc:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # the runner is stopping
                error, exc_info = "cancelled from inside the task", exc
            except Exception as exc:
                error, exc_info = _describe(exc), exc
            finally:
                entry.running = False
            self._record(entry, error, exc_info)

    def _record(self, entry: _Entry, error: str | None, exc_info: BaseException | None) -> None:
        extra = {"task_owner": entry.owner, "task_name": entry.task.name}
        if error is None:
            if entry.consecutive_failures:
                logger.info(
                    "background task %s recovered after %d failed runs",
                    entry.label,
                    entry.consecutive_failures,
                    extra=extra,
                )
            entry.consecutive_failures = 0
            entry.last_error = None
            entry.last_success_at = self._clock.now()
            return
        entry.failures += 1
        entry.consecutive_failures += 1
        entry.last_error = error
        if entry.consecutive_failures == 1:  # once per streak; status() shows the rest
            logger.error(
                "background task %s failed: %s (retrying with backoff; logged again on recovery)",
                entry.label,
                error,
                exc_info=exc_info,
                extra=extra,
            )
