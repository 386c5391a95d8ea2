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
from typing import Any, Literal, get_args

from medianest_server.clock import SYSTEM_CLOCK, Clock
from medianest_server.db import Database, Row
from medianest_server.db.base import dump_json

logger = logging.getLogger("medianest.jobs")

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
FINISHED_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
#: Longest ``last_error`` stored; longer error texts are cut.
MAX_ERROR_CHARS = 2000
#: Most rows one :meth:`JobQueue.list` call returns.
MAX_LIST_LIMIT = 500


@dataclass(frozen=True)
class Job:
    """One row of the ``jobs`` table. Times are UTC; ``attempts`` counts claims so far."""

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
        )


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
_DUE = _BEST_OF.format(ready="status = 'queued' AND run_after <= :now")
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


class JobQueue:
    """The jobs table as a queue. Safe to share between tasks; one per database is enough.

    ``backoff_base_seconds``/``backoff_max_seconds`` shape the wait before a failed job's next
    attempt: ``min(max, base * 2**(attempts - 1))``, times a random factor in 0.8..1.2.
    """

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = SYSTEM_CLOCK,
        backoff_base_seconds: float = 5.0,
        backoff_max_seconds: float = 900.0,
        rng: random.Random | None = None,
    ) -> None:
        self._db = db
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
    ) -> Job:
        """Store a job; workers of ``queue`` run it once ``run_after`` (default: now) has passed.

        ``payload`` must be JSON (it is what the handler gets). A higher ``priority`` runs first.
        ``user_id`` marks the job as that user's: they may see and cancel it.
        """
        if not queue or not kind:
            raise ValueError("a job needs a queue and a kind")
        if max_attempts < 1:
            raise ValueError(f"max_attempts must be at least 1, not {max_attempts}")
        try:
            payload_json = dump_json(dict(payload))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"job payload is not JSON: {exc}") from exc
        now = self._clock.now()
        row = await self._db.fetch_one(
            """
            INSERT INTO jobs (queue, kind, payload, status, priority, attempts, max_attempts,
                              run_after, user_id, created_at, updated_at)
            VALUES (:queue, :kind, :payload, 'queued', :priority, 0, :max_attempts,
                    :run_after, :user_id, :now, :now)
            RETURNING *
            """,
            {
                "queue": queue,
                "kind": kind,
                "payload": payload_json,
                "priority": priority,
                "max_attempts": max_attempts,
                "run_after": run_after or now,
                "user_id": user_id,
                "now": now,
            },
        )
        assert row is not None
        for wake in list(self._wakers):
            wake(queue)
        return Job.from_row(row)

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
        row = await self._db.fetch_one(
            f"""
            UPDATE jobs SET status = 'succeeded', result = :result, lease_expires_at = NULL,
                finished_at = :now, updated_at = :now
            WHERE {_OWNED}
            RETURNING *
            """,
            {"id": job_id, "worker_id": worker_id, "result": result_json, "now": self._clock.now()},
        )
        return None if row is None else Job.from_row(row)

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
        changed = await self._db.execute(
            f"""
            UPDATE jobs SET status = 'queued', attempts = attempts - 1, lease_expires_at = NULL,
                updated_at = :now
            WHERE {_OWNED}
            """,
            {"id": job_id, "worker_id": worker_id, "now": self._clock.now()},
        )
        return changed == 1

    async def cancel(self, job_id: int, *, user_id: int | None = None) -> bool:
        """Cancel a queued or running job; ``False`` if there is no such unfinished job.

        With ``user_id``, only that user's job: another user's id answers ``False`` as if absent.
        A running job's worker learns it at its next heartbeat and stops the handler.
        """
        now = self._clock.now()
        params: dict[str, Any] = {"id": job_id, "now": now}
        mine = ""
        if user_id is not None:
            mine = " AND user_id = :user_id"
            params["user_id"] = user_id
        changed = await self._db.execute(
            f"""
            UPDATE jobs SET status = 'cancelled', lease_expires_at = NULL, finished_at = :now,
                updated_at = :now
            WHERE id = :id AND status IN ('queued', 'running'){mine}
            """,
            params,
        )
        return changed == 1

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

        Returns how many were deleted.
        """
        in_list, params = _names("s", FINISHED_STATUSES)
        return await self._db.execute(
            f"DELETE FROM jobs WHERE status IN ({in_list}) AND finished_at < :cutoff",
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
    ) -> builtins.list[Job]:
        """Jobs, newest first, filtered by user, queue and statuses (any of them).

        Page with ``before_id``: the id of the last job of the previous page. ``limit`` is at
        most 500.
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
        if before_id is not None:
            where.append("id < :before_id")
            params["before_id"] = before_id
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        rows = await self._db.fetch_all(
            f"SELECT * FROM jobs {condition} ORDER BY id DESC LIMIT :limit", params
        )
        return [Job.from_row(row) for row in rows]
