"""The states a job goes through (see docs/plugins.md, `ctx.jobs`).

``queued`` (waiting to be claimed, or for its retry) → ``running`` (a worker holds its lease) →
``succeeded``, ``failed`` (no attempts left, or not retryable) or ``cancelled``. A failed attempt
with attempts left goes back to ``queued``; so does a job a stopping worker hands back.
"""

from __future__ import annotations

from typing import Literal, get_args

JobStatus = Literal["queued", "running", "succeeded", "failed", "cancelled"]
JOB_STATUSES: tuple[str, ...] = get_args(JobStatus)
FINISHED_STATUSES: tuple[str, ...] = ("succeeded", "failed", "cancelled")
