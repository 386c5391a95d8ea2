"""The durable job queue: long work (downloads, syncs) stored in the ``jobs`` table.

A producer calls :meth:`JobQueue.enqueue`; a :class:`Worker` (in the server, or a separate
``medianest worker`` process on the same database) claims ready jobs, runs the handler registered
for the job's kind and records the outcome. A claim is a lease: the worker renews it with a
heartbeat every third of the lease, and a job whose worker died (lease expired) is claimed again by
another worker. A failed attempt is retried with exponential backoff up to ``max_attempts``.

On PostgreSQL claims use ``SELECT … FOR UPDATE SKIP LOCKED``, so many workers on many hosts claim
concurrently without waiting on each other; on SQLite the single writer serialises them. Either
way two claimers never get the same job.

`queue.py`: the jobs and the table's rules (enqueue, claim, finish, retry, cancel, list);
`worker.py`: the worker that runs them.
"""

from .queue import (
    FINISHED_STATUSES,
    JOB_STATUSES,
    MAX_ERROR_CHARS,
    MAX_LIST_LIMIT,
    Job,
    JobQueue,
    JobStatus,
)
from .worker import (
    FinishedCallback,
    JobContext,
    JobHandler,
    ProgressCallback,
    Worker,
    default_worker_id,
)

__all__ = [
    "FINISHED_STATUSES",
    "JOB_STATUSES",
    "MAX_ERROR_CHARS",
    "MAX_LIST_LIMIT",
    "FinishedCallback",
    "Job",
    "JobContext",
    "JobHandler",
    "JobQueue",
    "JobStatus",
    "ProgressCallback",
    "Worker",
    "default_worker_id",
]
