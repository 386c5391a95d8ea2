"""The worker side of the job queue: claims jobs, runs their handlers under a renewed lease.

See `medianest_server.jobs` for the whole story; `queue.py` holds the table and its rules.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import logging
import os
import secrets
import socket
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Literal

from .progress import ProgressRecorder
from .queue import FINISHED_STATUSES, Job, JobQueue

logger = logging.getLogger("medianest.jobs")


class JobContext:
    """What a handler gets besides its job: cancellation state and a progress reporter."""

    def __init__(
        self,
        job: Job,
        on_progress: Callable[[Job, Mapping[str, Any]], Awaitable[None]] | None = None,
        *,
        recorder: ProgressRecorder | None = None,
    ) -> None:
        self.job = job
        self._on_progress = on_progress
        self._recorder = recorder
        self._cancelled = asyncio.Event()
        self._progress_failed = False

    @property
    def is_cancelled(self) -> bool:
        """True once the job was cancelled, lost, or the worker is stopping.

        The handler task is also cancelled then; check this in work that cannot be interrupted
        by ``asyncio.CancelledError`` (a subprocess, a thread).
        """
        return self._cancelled.is_set()

    async def wait_cancelled(self) -> None:
        """Return once :attr:`is_cancelled` is true."""
        await self._cancelled.wait()

    async def progress(self, data: Mapping[str, Any]) -> None:
        """Report progress: ``{"percent": 42.5, ...}`` (0..100) and anything else JSON (bytes
        done, speed).

        It is stored on the job's row (``job.progress``, ``job.progress_data``: what a ``GET`` of
        the job shows; a parent's percent is its children's mean) and published to the job's
        owner as ``core.job.updated`` on ``user:<id>``, at most every 0.5 s unless the percent
        moved a whole point, the latest report always landing. The worker's ``on_progress``
        callback gets every report. Storage and callback failures are logged, not raised; a
        ``percent`` that is not a number, or data that is not JSON, is a ``ValueError``.
        """
        if self._recorder is not None:
            await self._recorder.report(data)
        if self._on_progress is None:
            return
        try:
            await self._on_progress(self.job, data)
        except Exception:
            if not self._progress_failed:  # once per job, not on every progress report
                self._progress_failed = True
                logger.exception(
                    "progress callback failed for job %d (%s)",
                    self.job.id,
                    self.job.kind,
                    extra={"job_id": self.job.id, "job_kind": self.job.kind},
                )


JobHandler = Callable[[Job, JobContext], Awaitable[Any]]
ProgressCallback = Callable[[Job, Mapping[str, Any]], Awaitable[None]]
FinishedCallback = Callable[[Job], Awaitable[None]]


class _Run:
    """One job being run by this worker."""

    def __init__(self, job: Job, context: JobContext) -> None:
        self.job = job
        self.context = context
        self.handler: asyncio.Future[Any] | None = None
        self.task: asyncio.Task[None] | None = None
        self.stop_reason: Literal["lost", "stopping"] | None = None

    def interrupt(self, reason: Literal["lost", "stopping"]) -> None:
        if self.stop_reason is None:
            self.stop_reason = reason
        self.context._cancelled.set()
        if self.handler is not None:
            self.handler.cancel()


def default_worker_id() -> str:
    """``host:pid:random``: unique per worker, and says where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class Worker:
    """Claims jobs of ``queues`` and runs the handler registered for each job's kind.

    Up to ``concurrency`` jobs run at once, each under a lease renewed every ``lease_seconds/3``.
    A handler's return value (JSON) is the job's result; an exception fails the attempt (retried
    with backoff); a cancelled job's handler task is cancelled at the next heartbeat. ``stop()``
    gives running jobs a grace period, then cancels them and hands them back to the queue.

    ``on_progress(job, data)`` receives what handlers report with ``ctx.progress``;
    ``on_finished(job)`` the job once it succeeded, failed or was cancelled (not when a failed
    attempt will be retried, nor when it is handed back at stop).
    """

    def __init__(
        self,
        queue: JobQueue,
        *,
        queues: Sequence[str],
        handlers: Mapping[str, JobHandler] | None = None,
        worker_id: str | None = None,
        concurrency: int = 2,
        lease_seconds: float = 30.0,
        poll_interval_seconds: float = 1.0,
        on_progress: ProgressCallback | None = None,
        on_finished: FinishedCallback | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError("concurrency must be at least 1")
        if lease_seconds <= 0 or poll_interval_seconds <= 0:
            raise ValueError("lease_seconds and poll_interval_seconds must be positive")
        self.queue = queue
        self.queues = [queues] if isinstance(queues, str) else list(queues)
        self.worker_id = worker_id or default_worker_id()
        self.concurrency = concurrency
        self.lease_seconds = lease_seconds
        self.poll_interval_seconds = poll_interval_seconds
        self._handlers: dict[str, JobHandler] = dict(handlers or {})
        self._on_progress = on_progress
        self._on_finished = on_finished
        self._runs: dict[int, _Run] = {}
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._stopping = False
        self._claims_failing = False

    def register(self, kind: str, handler: JobHandler) -> None:
        """Run ``handler`` for jobs of ``kind``; one handler per kind."""
        if kind in self._handlers:
            raise ValueError(f"a handler for job kind {kind!r} is already registered")
        self._handlers[kind] = handler

    @property
    def running_jobs(self) -> builtins.list[Job]:
        """The jobs this worker is running now."""
        return [run.job for run in self._runs.values()]

    def wake(self, queue: str | None = None) -> None:
        """A hint that a job was enqueued: claim now rather than after the poll interval."""
        if queue is None or queue in self.queues:
            self._wake.set()

    async def start(self) -> None:
        """Start claiming and running jobs in the background."""
        if self._loop_task is not None:
            return
        self._stopping = False
        self.queue._wakers.add(self.wake)
        self._loop_task = asyncio.create_task(self._claim_loop(), name=f"worker {self.worker_id}")

    async def stop(self, *, grace_seconds: float = 10.0) -> None:
        """Stop claiming; give running jobs ``grace_seconds`` to finish, then cancel them and
        hand them back to the queue (the attempt is not charged) for another worker."""
        self._stopping = True
        self.queue._wakers.discard(self.wake)
        self._wake.set()
        loop_task, self._loop_task = self._loop_task, None
        if loop_task is not None:
            await loop_task
        tasks = {run.task for run in self._runs.values() if run.task is not None}
        if tasks:
            _, late = await asyncio.wait(tasks, timeout=grace_seconds)
            for run in list(self._runs.values()):
                if run.task in late:
                    run.interrupt("stopping")
            if late:
                _, stuck = await asyncio.wait(late, timeout=max(grace_seconds, 1.0))
                if stuck:
                    logger.warning(
                        "%d job handler(s) ignored cancellation and still run",
                        len(stuck),
                        extra={"worker_id": self.worker_id},
                    )

    async def run_until_idle(self) -> None:
        """Claim and run jobs until none is ready and none is running (for tests and scripts).

        Not to be used while the worker is started.
        """
        while True:
            while len(self._runs) < self.concurrency:
                job = await self.queue.claim(
                    self.queues, worker_id=self.worker_id, lease_seconds=self.lease_seconds
                )
                if job is None:
                    break
                self._spawn(job)
            tasks = {run.task for run in self._runs.values() if run.task is not None}
            if not tasks:
                return
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)

    async def _claim_loop(self) -> None:
        while not self._stopping:
            self._wake.clear()
            if len(self._runs) < self.concurrency:
                job = await self._claim()
                if job is not None:
                    if self._stopping:
                        await self._release_unstarted(job)
                        return
                    self._spawn(job)
                    continue
                timeout: float | None = self.poll_interval_seconds
            else:
                timeout = None  # a finished run sets _wake
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _release_unstarted(self, job: Job) -> None:
        try:
            await self.queue.release(job.id, worker_id=self.worker_id)
        except Exception:
            logger.exception(
                "handing job %d back to the queue failed; its lease will expire",
                job.id,
                extra={"job_id": job.id, "worker_id": self.worker_id},
            )

    async def _claim(self) -> Job | None:
        try:
            job = await self.queue.claim(
                self.queues, worker_id=self.worker_id, lease_seconds=self.lease_seconds
            )
        except Exception:
            if not self._claims_failing:
                self._claims_failing = True
                logger.exception(
                    "claiming jobs failed; retrying every %g s",
                    self.poll_interval_seconds,
                    extra={"worker_id": self.worker_id},
                )
            return None
        if self._claims_failing:
            self._claims_failing = False
            logger.info("claiming jobs works again", extra={"worker_id": self.worker_id})
        return job

    def _spawn(self, job: Job) -> None:
        stale = self._runs.pop(job.id, None)
        if stale is not None:
            # Our own lease ran out (the loop stalled) and we claimed the job again: the old run
            # must not go on beside the new one.
            stale.interrupt("lost")
        recorder = ProgressRecorder(self.queue, job, self.worker_id)
        run = _Run(job, JobContext(job, self._on_progress, recorder=recorder))
        self._runs[job.id] = run
        run.task = asyncio.create_task(self._run(run, stale), name=f"job {job.id} ({job.kind})")

    async def _run(self, run: _Run, stale: _Run | None) -> None:
        job = run.job
        try:
            if stale is not None and stale.task is not None:
                await asyncio.wait({stale.task})
                if run.stop_reason == "stopping":
                    await self.queue.release(job.id, worker_id=self.worker_id)
                    return
            handler = self._handlers.get(job.kind)
            if handler is None:
                failed = await self.queue.fail(
                    job.id,
                    worker_id=self.worker_id,
                    error=f"no handler for kind {job.kind!r}",
                    retry=False,
                )
                await self._finished(failed)
                return
            run.handler = asyncio.create_task(self._call(handler, run))
            heartbeat = asyncio.create_task(self._heartbeat(run))
            try:
                await asyncio.wait({run.handler})
            finally:
                heartbeat.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await heartbeat
            await self._record_outcome(run, run.handler)
        except Exception:
            logger.exception(
                "recording the outcome of job %d (%s) failed; its lease will expire",
                job.id,
                job.kind,
                extra={"job_id": job.id, "job_kind": job.kind, "worker_id": self.worker_id},
            )
        finally:
            if run.context._recorder is not None:
                await run.context._recorder.close()
            if self._runs.get(job.id) is run:
                del self._runs[job.id]
            self._wake.set()

    @staticmethod
    async def _call(handler: JobHandler, run: _Run) -> Any:
        # Inside the task, so that even a handler that raises before awaiting fails the job.
        return await handler(run.job, run.context)

    async def _record_outcome(self, run: _Run, handler: asyncio.Future[Any]) -> None:
        job = run.job
        if handler.cancelled():
            if run.stop_reason == "stopping":
                await self.queue.release(job.id, worker_id=self.worker_id)
                logger.info(
                    "job %d (%s) handed back to the queue: the worker is stopping",
                    job.id,
                    job.kind,
                    extra={"job_id": job.id, "job_kind": job.kind, "worker_id": self.worker_id},
                )
            elif run.stop_reason == "lost":
                current = await self.queue.get(job.id)
                if current is not None and current.status == "cancelled":
                    logger.info(
                        "job %d (%s) was cancelled; its handler stopped",
                        job.id,
                        job.kind,
                        extra={"job_id": job.id, "job_kind": job.kind},
                    )
                    await self._finished(current)
            else:  # the handler cancelled itself
                failed = await self.queue.fail(
                    job.id, worker_id=self.worker_id, error="the handler was cancelled"
                )
                await self._finished(failed)
            return
        exc = handler.exception()
        if exc is not None:
            failed = await self.queue.fail(job.id, worker_id=self.worker_id, error=_describe(exc))
            await self._finished(failed)
            return
        try:
            done = await self.queue.finish(
                job.id, worker_id=self.worker_id, result=handler.result()
            )
        except ValueError as exc:  # the result is not JSON
            failed = await self.queue.fail(
                job.id, worker_id=self.worker_id, error=str(exc), retry=False
            )
            await self._finished(failed)
            return
        await self._finished(done)

    async def _finished(self, job: Job | None) -> None:
        if job is None or self._on_finished is None or job.status not in FINISHED_STATUSES:
            return
        try:
            await self._on_finished(job)
        except Exception:
            logger.exception(
                "on_finished callback failed for job %d (%s)",
                job.id,
                job.kind,
                extra={"job_id": job.id, "job_kind": job.kind},
            )

    async def _heartbeat(self, run: _Run) -> None:
        """Renew the lease every lease/3; stop the handler when the job is no longer ours.

        A job runs once: while the heartbeat renews the lease no other worker claims it, and
        when renewing fails (the database is unreachable) the handler is stopped while the last
        lease still holds, before another worker may take the job. Only a handler that blocks
        the event loop (no ``await`` for a whole lease) can outlive its lease.
        """
        loop = asyncio.get_running_loop()
        interval = self.lease_seconds / 3
        renewed_at = loop.time()
        failing = False
        while True:
            await asyncio.sleep(interval)
            sent_at = loop.time()
            try:
                ours = await self.queue.heartbeat(
                    run.job.id, worker_id=self.worker_id, lease_seconds=self.lease_seconds
                )
            except Exception:
                if not failing:
                    failing = True
                    logger.exception(
                        "heartbeat of job %d failed",
                        run.job.id,
                        extra={"job_id": run.job.id, "worker_id": self.worker_id},
                    )
                # Past the lease another worker may take the job: if the lease would run out before
                # the next heartbeat, stop running it now, while it is still ours.
                ours = loop.time() + interval < renewed_at + self.lease_seconds
            else:
                if ours:
                    renewed_at = sent_at
                failing = False
            if not ours:
                run.interrupt("lost")
                return
