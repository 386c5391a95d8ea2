"""The durable job queue: long work (downloads, syncs) stored in the ``jobs`` table.

A producer calls :meth:`JobQueue.enqueue`; a :class:`Worker` (in the server, or a separate
``medianest worker`` process on the same database) claims ready jobs, runs the handler registered
for the job's kind and records the outcome. A claim is a lease: the worker renews it with a
heartbeat every third of the lease, and a job whose worker died (lease expired) is claimed again by
another worker. A failed attempt is retried with exponential backoff up to ``max_attempts``.

On PostgreSQL claims use ``SELECT … FOR UPDATE SKIP LOCKED``, so many workers on many hosts claim
concurrently without waiting on each other; on SQLite the single writer serialises them. Either
way two claimers never get the same job.

A parent job (a playlist) is never run itself: its state and progress follow its children, which
are ordinary jobs (`parents.py` has the rule). Progress a handler reports is stored on the job's
row at a bounded rate and published to its owner (`progress.py`). A handler that runs a program
uses `run_process_group`, which ends the program's whole process group with the job.

`states.py`: the states; `queue.py`: the jobs and the table's rules (enqueue, claim, finish,
retry, cancel, list); `parents.py`: jobs with children; `worker.py`: the worker that runs them;
`progress.py`: stored progress; `process_group.py`: subprocesses that never outlive their job.
"""

from .parents import JobSpec
from .process_group import TERMINATE_GRACE_SECONDS, run_process_group
from .progress import PROGRESS_INTERVAL_SECONDS, PROGRESS_STEP_PERCENT
from .queue import (
    JOB_UPDATED,
    MAX_ERROR_CHARS,
    MAX_LIST_LIMIT,
    Job,
    JobQueue,
    job_event_data,
)
from .states import FINISHED_STATUSES, JOB_STATUSES, JobStatus
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
    "JOB_UPDATED",
    "MAX_ERROR_CHARS",
    "MAX_LIST_LIMIT",
    "PROGRESS_INTERVAL_SECONDS",
    "PROGRESS_STEP_PERCENT",
    "TERMINATE_GRACE_SECONDS",
    "FinishedCallback",
    "Job",
    "JobContext",
    "JobHandler",
    "JobQueue",
    "JobSpec",
    "JobStatus",
    "ProgressCallback",
    "Worker",
    "default_worker_id",
    "job_event_data",
    "run_process_group",
]
