"""The jobs table and its rules: enqueue, claim (a lease), heartbeat, finish, retry, cancel, list.

See `medianest_server.jobs` for how the queue and its workers fit together.
"""

from __future__ import annotations

import builtins
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from medianest_server.clock import SYSTEM_CLOCK, Clock
from medianest_server.db import Connection, Database, Row
from medianest_server.db.base import dump_json
from medianest_server.events import EventBus, make_event

from .parents import JobSpec, refresh_parent
from .states import FINISHED_STATUSES, JOB_STATUSES, JobStatus

logger = logging.getLogger("medianest.jobs")

__all__ = ["FINISHED_STATUSES", "JOB_STATUSES", "Job", "JobQueue", "JobSpec", "JobStatus"]

#: The event published to a job's owner (``user:<id>``, ``admins`` for a job of nobody's) when
#: its state or stored progress changes; its data is :func:`job_event_data`.
JOB_UPDATED = "core.job.updated"
#: Longest ``last_error`` stored; longer error texts are cut.
MAX_ERROR_CHARS = 2000
#: Most rows one :meth:`JobQueue.list` call returns.
MAX_LIST_LIMIT = 500


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table. Times are UTC; ``attempts`` counts claims so far.

    ``progress`` is the percent done (0..100, ``None`` until reported) and ``progress_data`` what
    the handler last reported with it; for a parent (``is_parent``) they follow its children.
    ``parent_id`` is the parent of a child job.
    """

    id: int
    queue: str
    kind: str
    payload: dict[str, Any]
    status: JobStatus
    priority: int
    attempts: int
    max_attempts: int
    run_after: datetime
    lease_expires_at: datetime | None
    worker_id: str | None
    last_error: str | None
    result: Any
    user_id: int | None
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None
    parent_id: int | None = None
    is_parent: bool = False
    progress: float | None = None
    progress_data: Any = None

    @classmethod
    def from_row(cls, row: Row) -> Job:
        return cls(
            id=int(row["id"]),
            queue=row["queue"],
            kind=row["kind"],
            payload=row["payload"],
            status=row["status"],
            priority=int(row["priority"]),
            attempts=int(row["attempts"]),
            max_attempts=int(row["max_attempts"]),
            run_after=row["run_after"],
            lease_expires_at=row["lease_expires_at"],
            worker_id=row["worker_id"],
            last_error=row["last_error"],
            result=row["result"],
            user_id=None if row["user_id"] is None else int(row["user_id"]),
            created_at=row["created_at"],
            updated_at=row["updated_at"],
            finished_at=row["finished_at"],
            parent_id=None if row["parent_id"] is None else int(row["parent_id"]),
            is_parent=bool(row["is_parent"]),
            progress=None if row["progress"] is None else float(row["progress"]),
            progress_data=row["progress_data"],
        )


def job_event_data(job: Job) -> dict[str, Any]:
    """What a ``core.job.updated`` event says about ``job``."""
    return {
        "job_id": job.id,
        "parent_id": job.parent_id,
        "queue": job.queue,
        "kind": job.kind,
        "status": job.status,
        "progress": job.progress,
        "progress_data": job.progress_data,
    }


def _names(prefix: str, values: Sequence[str]) -> tuple[str, dict[str, str]]:
    """``:p0, :p1, …`` and their values, for an ``IN (…)`` list."""
    params = {f"{prefix}{i}": value for i, value in enumerate(values)}
    return ", ".join(f":{name}" for name in params), params


def _truncate(error: str) -> str:
    return error if len(error) <= MAX_ERROR_CHARS else error[: MAX_ERROR_CHARS - 1] + "…"


# A job is ready when it is queued and due, or running under a lease that expired (its worker
# died). The best of each kind is found apart, so that each half can use an index (one OR across
# both would read and sort every ready row), then the better of the two is claimed.
_BEST_OF = """
    SELECT id, priority, run_after FROM jobs
    WHERE queue IN ({{queues}}) AND {ready}
    ORDER BY priority DESC, run_after, id
    LIMIT 1{{lock}}
"""
# A parent is never run: its state follows its children (parents.py).
_DUE = _BEST_OF.format(ready="status = 'queued' AND run_after <= :now AND is_parent = FALSE")
_EXPIRED = _BEST_OF.format(ready="status = 'running' AND lease_expires_at <= :now")
# A reclaimed job that already used all its attempts fails instead of running again.
_LOST = "status = 'running' AND attempts >= max_attempts"
_CLAIM = f"""
WITH due AS ({_DUE}), expired AS ({_EXPIRED}),
best AS (
    SELECT id FROM (SELECT * FROM due UNION ALL SELECT * FROM expired) AS candidates
    ORDER BY priority DESC, run_after, id
    LIMIT 1
)
UPDATE jobs SET
    status = CASE WHEN {_LOST} THEN 'failed' ELSE 'running' END,
    attempts = CASE WHEN {_LOST} THEN attempts ELSE attempts + 1 END,
    worker_id = CASE WHEN {_LOST} THEN worker_id ELSE :worker_id END,
    lease_expires_at = CASE WHEN {_LOST} THEN NULL ELSE :lease_expires_at END,
    last_error = CASE
        WHEN {_LOST} THEN 'worker lost (lease expired) after ' || attempts || ' attempts'
        WHEN status = 'running' THEN 'worker lost (lease expired) during attempt ' || attempts
        ELSE last_error END,
    finished_at = CASE WHEN {_LOST} THEN :now ELSE NULL END,
    updated_at = :now
WHERE id = (SELECT id FROM best)
RETURNING *
"""
_OWNED = "id = :id AND worker_id = :worker_id AND status = 'running'"
_INSERT = """
INSERT INTO jobs (queue, kind, payload, status, priority, attempts, max_attempts, run_after,
                  user_id, parent_id, created_at, updated_at)
VALUES (:queue, :kind, :payload, 'queued', :priority, 0, :max_attempts, :run_after,
        :user_id, :parent_id, :now, :now)
RETURNING *
"""
_INSERT_PARENT = """
INSERT INTO jobs (queue, kind, payload, status, priority, attempts, max_attempts, run_after,
                  user_id, is_parent, created_at, updated_at)
VALUES (:queue, :kind, :payload, 'queued', :priority, 0, :max_attempts, :run_after,
        :user_id, TRUE, :now, :now)
RETURNING id
"""


def _insert_values(
    queue: str,
    kind: str,
    payload: Mapping[str, Any],
    priority: int,
    max_attempts: int,
    run_after: datetime,
) -> dict[str, Any]:
    """The checked values of a new job's row (``ValueError`` for a bad one)."""
    if not queue or not kind:
        raise ValueError("a job needs a queue and a kind")
    if max_attempts < 1:
        raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
    try:
        payload_json = dump_json(dict(payload))
    except (TypeError, ValueError) as exc:
        raise ValueError(f"job payload is not JSON: {exc}") from exc
    return {
        "queue": queue,
        "kind": kind,
        "payload": payload_json,
        "priority": priority,
        "max_attempts": max_attempts,
        "run_after": run_after,
    }


class JobQueue:
    """The jobs table as a queue. Safe to share between tasks; one per database is enough.

    ``backoff_base_seconds``/``backoff_max_seconds`` shape the wait before a failed job's next
    attempt: ``min(max, base * 2**(attempts - 1))``, times a random factor in 0.8..1.2.
    With ``events``, every change of a job's state or stored progress is published to its owner
    (``core.job.updated`` on ``user:<id>``) so their open pages update live.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = SYSTEM_CLOCK,
        backoff_base_seconds: float = 5.0,
        backoff_max_seconds: float = 900.0,
        rng: random.Random | None = None,
        events: EventBus | None = None,
    ) -> None:
        self._db = db
        self._events = events
        self._clock = clock
        self._backoff_base = backoff_base_seconds
        self._backoff_max = backoff_max_seconds
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        # PostgreSQL: claimers skip each other's candidate rows instead of waiting on them.
        # SQLite: one writer at a time, so the statement alone is atomic.
        lock = " FOR UPDATE SKIP LOCKED" if db.dialect == "postgresql" else ""
        self._claim_sql = _CLAIM.replace("{lock}", lock)
        self._claim_sql_by_size: dict[int, str] = {}  # the SQL for claims from N queues
        # Workers of this process waiting for work, woken when a job is enqueued here.
        self._wakers: set[Callable[[str], None]] = set()

    @property
    def db(self) -> Database:
        return self._db

    @property
    def clock(self) -> Clock:
        return self._clock

    async def enqueue(
        self,
        queue: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        user_id: int | None = None,
        priority: int = 0,
        max_attempts: int = 3,
        run_after: datetime | None = None,
        parent_id: int | None = None,
    ) -> Job:
        """Store a job; workers of ``queue`` run it once ``run_after`` (default: now) has passed.

        ``payload`` must be JSON (it is what the handler gets). A higher ``priority`` runs first.
        ``user_id`` marks the job as that user's: they may see and cancel it.

        With ``parent_id`` the job is a child of that parent (see :meth:`enqueue_parent`): it
        belongs to the parent's owner (a different ``user_id`` is a ``ValueError``), and the
        parent must exist and not have finished (``ValueError`` otherwise).
        """
        now = self._clock.now()
        values = _insert_values(queue, kind, payload, priority, max_attempts, run_after or now)
        if parent_id is None:
            row = await self._db.fetch_one(
                _INSERT, {**values, "user_id": user_id, "parent_id": None, "now": now}
            )
            assert row is not None
            job = Job.from_row(row)
        else:
            async with self._db.transaction() as conn:
                parent = await conn.fetch_one(
                    "UPDATE jobs SET updated_at = updated_at WHERE id = :id AND is_parent = TRUE "
                    "RETURNING status, user_id",
                    {"id": parent_id},
                )
                if parent is None:
                    raise ValueError(f"there is no parent job {parent_id}")
                if parent["status"] in FINISHED_STATUSES:
                    raise ValueError(f"parent job {parent_id} has {parent['status']}")
                if user_id is not None and user_id != parent["user_id"]:
                    raise ValueError("a child job belongs to its parent's owner")
                row = await conn.fetch_one(
                    _INSERT,
                    {**values, "user_id": parent["user_id"], "parent_id": parent_id, "now": now},
                )
                assert row is not None
                job = Job.from_row(row)
                changed = await refresh_parent(conn, parent_id, now)
            await self._announce(None if changed is None else Job.from_row(changed))
        for wake in list(self._wakers):
            wake(job.queue)
        return job

    async def enqueue_parent(
        self,
        queue: str,
        kind: str,
        payload: Mapping[str, Any],
        *,
        children: Sequence[JobSpec] = (),
        user_id: int | None = None,
    ) -> Job:
        """Store a parent job (a playlist) and its ``children`` (its videos) in one transaction.

        No worker runs the parent: its state, progress and completion follow its children's
        (see `medianest_server.jobs.parents` for the rule), cancelling it cancels the children
        that have not finished, and the children belong to its owner ``user_id``. Add children
        later with ``enqueue(..., parent_id=parent.id)`` while it has not finished; list them
        with :meth:`children`. Returns the parent as it is once the children are stored.
        """
        now = self._clock.now()
        parent_values = _insert_values(queue, kind, payload, 0, 1, now)
        child_values = [
            _insert_values(
                spec.queue or queue, spec.kind, spec.payload, spec.priority, spec.max_attempts, now
            )
            for spec in children
        ]
        async with self._db.transaction() as conn:
            parent_id = await conn.fetch_val(
                _INSERT_PARENT, {**parent_values, "user_id": user_id, "now": now}
            )
            owner = {"user_id": user_id, "parent_id": parent_id, "now": now}
            for values in child_values:
                await conn.fetch_one(_INSERT, {**values, **owner})
            await refresh_parent(conn, int(parent_id), now)
            row = await conn.fetch_one("SELECT * FROM jobs WHERE id = :id", {"id": parent_id})
        assert row is not None
        for wake in list(self._wakers):
            for woken in {values["queue"] for values in child_values}:
                wake(woken)
        return Job.from_row(row)

    async def children(self, parent_id: int, *, user_id: int | None = None) -> builtins.list[Job]:
        """The children of a parent job, oldest first; with ``user_id`` only if they are that
        user's (none otherwise)."""
        params: dict[str, Any] = {"parent_id": parent_id}
        mine = ""
        if user_id is not None:
            mine = " AND user_id = :user_id"
            params["user_id"] = user_id
        rows = await self._db.fetch_all(
            f"SELECT * FROM jobs WHERE parent_id = :parent_id{mine} ORDER BY id", params
        )
        return [Job.from_row(row) for row in rows]

    async def claim(
        self, queues: Sequence[str], *, worker_id: str, lease_seconds: float
    ) -> Job | None:
        """Take the best ready job of ``queues`` for ``worker_id``, or ``None`` if none is ready.

        Best: highest priority, then oldest ``run_after``, then lowest id. Ready: queued and due,
        or running with an expired lease (its worker died). The job becomes ``running`` under a
        lease of ``lease_seconds`` and its ``attempts`` goes up by one. A reclaimed job that has
        used all its attempts is marked failed instead (and the next ready job is taken).
        """
        if isinstance(queues, str):
            queues = [queues]
        if not queues:
            return None
        in_list, params = _names("q", queues)
        sql = self._claim_sql_by_size.get(len(queues))
        if sql is None:
            sql = self._claim_sql_by_size[len(queues)] = self._claim_sql.format(queues=in_list)
        while True:
            now = self._clock.now()
            row = await self._db.fetch_one(
                sql,
                {
                    **params,
                    "now": now,
                    "worker_id": worker_id,
                    "lease_expires_at": now + timedelta(seconds=lease_seconds),
                },
            )
            if row is None:
                return None
            job = Job.from_row(row)
            if job.parent_id is not None:
                # Not in the claim's statement: a crash in between leaves the parent a step
                # behind only until its next child changes.
                async with self._db.transaction() as conn:
                    parent = await self._refresh(conn, job, now)
                await self._announce(parent)
            await self._announce(job)
            if job.status == "running":
                return job
            logger.error(
                "job %d (%s) failed: %s",
                job.id,
                job.kind,
                job.last_error,
                extra={"job_id": job.id, "job_kind": job.kind, "job_queue": job.queue},
            )

    async def heartbeat(self, job_id: int, *, worker_id: str, lease_seconds: float) -> bool:
        """Extend the lease to now + ``lease_seconds``.

        ``False`` when the job is no longer this worker's: cancelled, finished, or reclaimed by
        another worker after the lease expired. The worker must then stop running it.
        """
        now = self._clock.now()
        changed = await self._db.execute(
            f"UPDATE jobs SET lease_expires_at = :lease_expires_at, updated_at = :now "
            f"WHERE {_OWNED}",
            {
                "id": job_id,
                "worker_id": worker_id,
                "now": now,
                "lease_expires_at": now + timedelta(seconds=lease_seconds),
            },
        )
        return changed == 1

    async def complete(self, job_id: int, *, worker_id: str, result: Any = None) -> bool:
        """Mark the job succeeded with ``result`` (JSON). ``False`` if it is not this worker's."""
        return await self.finish(job_id, worker_id=worker_id, result=result) is not None

    async def finish(self, job_id: int, *, worker_id: str, result: Any = None) -> Job | None:
        """:meth:`complete`, returning the finished job (``None`` if it is not this worker's)."""
        try:
            result_json = None if result is None else dump_json(result)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"job result is not JSON: {exc}") from exc
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetch_one(
                f"""
                UPDATE jobs SET status = 'succeeded', result = :result, lease_expires_at = NULL,
                    progress = 100, finished_at = :now, updated_at = :now
                WHERE {_OWNED}
                RETURNING *
                """,
                {"id": job_id, "worker_id": worker_id, "result": result_json, "now": now},
            )
            if row is None:
                return None
            job = Job.from_row(row)
            parent = await self._refresh(conn, job, now)
        await self._announce(job, parent)
        return job

    async def fail(
        self, job_id: int, *, worker_id: str, error: str, retry: bool = True
    ) -> Job | None:
        """Record a failed attempt; returns the job as it now is, ``None`` if not this worker's.

        With ``retry`` and attempts left, the job goes back to ``queued`` and becomes ready after
        the backoff; otherwise it is ``failed`` for good. ``error`` is kept (cut to 2,000 chars)
        and logged once.
        """
        error = _truncate(error)
        async with self._db.transaction() as conn:
            now = self._clock.now()
            owned = {"id": job_id, "worker_id": worker_id, "now": now}
            # An UPDATE first: it locks the row on PostgreSQL before we decide.
            row = await conn.fetch_one(
                f"UPDATE jobs SET updated_at = :now WHERE {_OWNED} "
                "RETURNING attempts, max_attempts",
                owned,
            )
            if row is None:
                return None
            attempts, max_attempts = int(row["attempts"]), int(row["max_attempts"])
            if retry and attempts < max_attempts:
                delay = self.backoff_seconds(attempts)
                row = await conn.fetch_one(
                    f"""
                    UPDATE jobs SET status = 'queued', run_after = :run_after,
                        lease_expires_at = NULL, last_error = :error, updated_at = :now
                    WHERE {_OWNED}
                    RETURNING *
                    """,
                    {**owned, "error": error, "run_after": now + timedelta(seconds=delay)},
                )
            else:
                delay = None
                row = await conn.fetch_one(
                    f"""
                    UPDATE jobs SET status = 'failed', lease_expires_at = NULL,
                        last_error = :error, finished_at = :now, updated_at = :now
                    WHERE {_OWNED}
                    RETURNING *
                    """,
                    {**owned, "error": error},
                )
            assert row is not None
            job = Job.from_row(row)
            parent = await self._refresh(conn, job, now)
        await self._announce(job, parent)
        extra = {
            "job_id": job.id,
            "job_kind": job.kind,
            "job_queue": job.queue,
            "attempt": attempts,
            "max_attempts": max_attempts,
        }
        if delay is None:
            logger.error(
                "job %d (%s) failed on attempt %d of %d: %s",
                job.id,
                job.kind,
                attempts,
                max_attempts,
                error,
                extra=extra,
            )
        else:
            logger.warning(
                "job %d (%s) failed on attempt %d of %d, retrying in %.1f s: %s",
                job.id,
                job.kind,
                attempts,
                max_attempts,
                delay,
                error,
                extra=extra,
            )
        return job

    def backoff_seconds(self, attempts: int) -> float:
        """The wait before the next attempt after ``attempts`` attempts failed (with jitter)."""
        exponent = min(max(attempts - 1, 0), 60)
        base = min(self._backoff_max, self._backoff_base * 2.0**exponent)
        return base * self._rng.uniform(0.8, 1.2)

    async def release(self, job_id: int, *, worker_id: str) -> bool:
        """Give a running job back to the queue without charging the attempt (worker stopping).

        Another worker can claim it at once. ``False`` if it is not this worker's.
        """
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetch_one(
                f"""
                UPDATE jobs SET status = 'queued', attempts = attempts - 1,
                    lease_expires_at = NULL, updated_at = :now
                WHERE {_OWNED}
                RETURNING *
                """,
                {"id": job_id, "worker_id": worker_id, "now": now},
            )
            if row is None:
                return False
            job = Job.from_row(row)
            parent = await self._refresh(conn, job, now)
        await self._announce(job, parent)
        return True

    async def cancel(self, job_id: int, *, user_id: int | None = None) -> bool:
        """Cancel a queued or running job; ``False`` if there is no such unfinished job.

        With ``user_id``, only that user's job: another user's id answers ``False`` as if absent.
        A running job's worker learns it at its next heartbeat and stops the handler. Cancelling
        a parent cancels its children that have not finished (the ones that have keep their
        outcome); cancelling a child updates its parent, which finishes if that was its last.
        """
        now = self._clock.now()
        params: dict[str, Any] = {"id": job_id, "now": now}
        mine = ""
        if user_id is not None:
            mine = " AND user_id = :user_id"
            params["user_id"] = user_id
        cancel = """
            UPDATE jobs SET status = 'cancelled', lease_expires_at = NULL, finished_at = :now,
                updated_at = :now
            WHERE {which} AND status IN ('queued', 'running'){mine}
            RETURNING *
        """
        async with self._db.transaction() as conn:
            # Children before their parent, the order every child's change takes: no deadlock.
            # (Only a parent has children; its children have its owner.)
            rows = await conn.fetch_all(cancel.format(which="parent_id = :id", mine=mine), params)
            row = await conn.fetch_one(cancel.format(which="id = :id", mine=mine), params)
            if row is None:
                return False
            job = Job.from_row(row)
            children = [Job.from_row(child) for child in rows]
            if job.is_parent:
                changed = await refresh_parent(conn, job.id, now)  # its counts
                job = job if changed is None else Job.from_row(changed)
            parent = await self._refresh(conn, job, now)
        await self._announce(*children, job, parent)
        return True

    async def record_progress(
        self,
        job_id: int,
        *,
        worker_id: str,
        percent: float | None,
        data: Mapping[str, Any] | None = None,
    ) -> Job | None:
        """Store a running job's progress (``percent`` 0..100, ``None`` keeps the last one; ``data``
        JSON, e.g. bytes done) on its row, update its parent, and tell its owner
        (``core.job.updated``). ``None`` if the job is not this worker's. Handlers report with
        ``JobContext.progress``, which calls this at a bounded rate."""
        if percent is not None:
            percent = min(100.0, max(0.0, float(percent)))
        now = self._clock.now()
        async with self._db.transaction() as conn:
            row = await conn.fetch_one(
                f"""
                UPDATE jobs SET progress = COALESCE(:percent, progress), progress_data = :data,
                    updated_at = :now
                WHERE {_OWNED}
                RETURNING *
                """,
                {
                    "id": job_id,
                    "worker_id": worker_id,
                    "percent": percent,
                    "data": None if data is None else dump_json(dict(data)),
                    "now": now,
                },
            )
            if row is None:
                return None
            job = Job.from_row(row)
            parent = await self._refresh(conn, job, now)
        await self._announce(job, parent)
        return job

    async def _refresh(self, conn: Connection, job: Job, now: datetime) -> Job | None:
        """Bring ``job``'s parent up to date; the parent if it changed."""
        if job.parent_id is None:
            return None
        row = await refresh_parent(conn, job.parent_id, now)
        return None if row is None else Job.from_row(row)

    async def _announce(self, *jobs: Job | None) -> None:
        """Tell each job's owner (its open pages) that it changed; never raises."""
        if self._events is None:
            return
        for job in jobs:
            if job is None:
                continue
            topic = "admins" if job.user_id is None else f"user:{job.user_id}"
            event = make_event(JOB_UPDATED, job_event_data(job), topic=topic, clock=self._clock)
            try:
                await self._events.publish(event)
            except Exception:
                logger.exception(
                    "publishing the change of job %d failed",
                    job.id,
                    extra={"job_id": job.id, "job_kind": job.kind},
                )

    async def get(self, job_id: int, *, user_id: int | None = None) -> Job | None:
        """The job, or ``None``; with ``user_id`` only if it is that user's."""
        params: dict[str, Any] = {"id": job_id}
        mine = ""
        if user_id is not None:
            mine = " AND user_id = :user_id"
            params["user_id"] = user_id
        row = await self._db.fetch_one(f"SELECT * FROM jobs WHERE id = :id{mine}", params)
        return None if row is None else Job.from_row(row)

    async def purge_finished(self, *, older_than: timedelta) -> int:
        """Delete succeeded, failed and cancelled jobs that finished before now - ``older_than``.

        Children go with their parent (never before it, which still counts them). Returns how
        many were deleted, children not counted.
        """
        in_list, params = _names("s", FINISHED_STATUSES)
        return await self._db.execute(
            f"DELETE FROM jobs WHERE status IN ({in_list}) AND finished_at < :cutoff "
            "AND parent_id IS NULL",
            {**params, "cutoff": self._clock.now() - older_than},
        )

    async def list(
        self,
        *,
        user_id: int | None = None,
        queue: str | None = None,
        statuses: Sequence[str] | None = None,
        limit: int = 50,
        before_id: int | None = None,
        top_level: bool = False,
    ) -> builtins.list[Job]:
        """Jobs, newest first, filtered by user, queue and statuses (any of them).

        Page with ``before_id``: the id of the last job of the previous page. ``limit`` is at
        most 500. ``top_level`` leaves out child jobs (a playlist shows once; its videos are
        ``children(parent.id)``). An unknown status is a ``ValueError``.
        """
        where: builtins.list[str] = []
        params: dict[str, Any] = {"limit": max(1, min(limit, MAX_LIST_LIMIT))}
        if user_id is not None:
            where.append("user_id = :user_id")
            params["user_id"] = user_id
        if queue is not None:
            where.append("queue = :queue")
            params["queue"] = queue
        if statuses is not None:
            if isinstance(statuses, str):
                statuses = [statuses]
            unknown = sorted(set(statuses).difference(JOB_STATUSES))
            if unknown:
                raise ValueError(f"unknown job status {unknown[0]!r}; one of {JOB_STATUSES}")
            if not statuses:
                return []
            in_list, names = _names("s", statuses)
            where.append(f"status IN ({in_list})")
            params.update(names)
        if top_level:
            where.append("parent_id IS NULL")
        if before_id is not None:
            where.append("id < :before_id")
            params["before_id"] = before_id
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.fetch_all(
            f"SELECT * FROM jobs {condition} ORDER BY id DESC LIMIT :limit", params
        )
        return [Job.from_row(row) for row in rows]
