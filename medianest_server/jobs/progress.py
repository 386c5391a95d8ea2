"""Progress a handler reports, stored on its job's row at a bounded rate and told to its owner.

A download reports many times a second; the row (and the owner's event) is written when the
percent has moved by a whole step (1 point) since the last write, or half a second has passed.
A report held back is written half a second after the last write, so the latest one always lands.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from medianest_server.db.base import dump_json

if TYPE_CHECKING:
    from .queue import Job, JobQueue

logger = logging.getLogger("medianest.jobs")

#: Shortest time between two progress writes of one job, unless the percent moved a whole step.
PROGRESS_INTERVAL_SECONDS = 0.5
#: A change of the percent that is written at once.
PROGRESS_STEP_PERCENT = 1.0


def percent_of(data: Mapping[str, Any]) -> float | None:
    """``data["percent"]`` (0..100, clamped), ``None`` if absent; ``ValueError`` if not a number."""
    percent = data.get("percent")
    if percent is None:
        return None
    if isinstance(percent, bool) or not isinstance(percent, int | float) or math.isnan(percent):
        raise ValueError(f"progress 'percent' must be a number from 0 to 100, not {percent!r}")
    return min(100.0, max(0.0, float(percent)))


class ProgressRecorder:
    """Writes one running job's reports through :meth:`JobQueue.record_progress`, throttled."""

    def __init__(
        self,
        queue: JobQueue,
        job: Job,
        worker_id: str,
        *,
        interval_seconds: float = PROGRESS_INTERVAL_SECONDS,
        step_percent: float = PROGRESS_STEP_PERCENT,
    ) -> None:
        self._queue = queue
        self._job = job
        self._worker_id = worker_id
        self._interval = interval_seconds
        self._step = step_percent
        self._latest: tuple[float | None, dict[str, Any]] | None = None
        self._written_at: float | None = None
        self._written_percent: float | None = job.progress
        self._lock = asyncio.Lock()
        self._flush: asyncio.Task[None] | None = None
        self._failed = False

    async def report(self, data: Mapping[str, Any]) -> None:
        """Take a report; write it now or within ``interval_seconds``. ``ValueError`` if ``data``
        is not JSON or its ``percent`` is not a number."""
        percent = percent_of(data)
        dump_json(dict(data))  # ValueError now, in the handler, rather than at the write
        self._latest = (percent, dict(data))
        loop = asyncio.get_running_loop()
        now = loop.time()
        stepped = percent is not None and (
            self._written_percent is None or abs(percent - self._written_percent) >= self._step
        )
        if stepped or self._written_at is None or now - self._written_at >= self._interval:
            await self._write()
        elif self._flush is None or self._flush.done():
            delay = self._written_at + self._interval - now
            self._flush = asyncio.create_task(self._write_later(delay))

    async def close(self) -> None:
        """The job's run is over: drop a write still waiting (the outcome is what counts now)."""
        if self._flush is not None and not self._flush.done():
            self._flush.cancel()
            try:
                await self._flush
            except asyncio.CancelledError:
                # ours, unless the task closing us is itself being cancelled: pass that on
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise

    async def _write_later(self, delay: float) -> None:
        await asyncio.sleep(max(0.0, delay))
        await self._write()

    async def _write(self) -> None:
        async with self._lock:  # one write at a time, always of the latest report
            latest, self._latest = self._latest, None
            if latest is None:
                return
            percent, data = latest
            self._written_at = asyncio.get_running_loop().time()
            if percent is not None:
                self._written_percent = percent
            try:
                await self._queue.record_progress(
                    self._job.id, worker_id=self._worker_id, percent=percent, data=data
                )
            except Exception:
                if not self._failed:  # once per job, not on every report
                    self._failed = True
                    logger.exception(
                        "storing the progress of job %d (%s) failed",
                        self._job.id,
                        self._job.kind,
                        extra={"job_id": self._job.id, "job_kind": self._job.kind},
                    )
