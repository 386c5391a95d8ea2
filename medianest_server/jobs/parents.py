"""Jobs with children: a parent (a playlist) whose state and progress follow its children's.

A parent is a row of the ``jobs`` table that no worker claims (``is_parent``). Whenever one of its
children changes (claimed, finished, failed, retried, cancelled, handed back, progress reported),
the queue recomputes the parent in the same transaction, with the parent's row locked, so two
children finishing at once on PostgreSQL cannot leave it behind. The rule:

- ``queued``: no child has started yet (or it has no children yet);
- ``running``: some child is unfinished and some child has started (claimed at least once, or
  finished): a playlist half downloaded with the rest waiting for a worker is running;
- once every child has finished (the parent settles, it never fails fast: one unavailable video
  does not stop the others): ``failed`` if any child failed, else ``succeeded`` if any child
  succeeded, else ``cancelled`` (every child was cancelled);
- a cancelled parent stays cancelled (cancelling it cancels its unfinished children).

Progress is the mean of the children's percent, a finished child (whatever its outcome) counting
100 and one that never reported 0. ``progress_data`` holds the children's count per status.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from medianest_server.db import Connection, Row

from .states import FINISHED_STATUSES, JobStatus


@dataclass(frozen=True)
class JobSpec:
    """One child for :meth:`JobQueue.enqueue_parent`: its kind and payload, and optionally its
    queue (default: the parent's), priority and attempts. Its owner is always the parent's."""

    kind: str
    payload: Mapping[str, Any] = field(default_factory=dict)
    queue: str | None = None
    priority: int = 0
    max_attempts: int = 3


@dataclass(frozen=True)
class ParentState:
    """What a parent's row says, worked out from its children."""

    status: JobStatus
    progress: float
    counts: dict[str, int]
    error: str | None


def parent_state(rows: Sequence[Mapping[str, Any]]) -> ParentState:
    """The parent's state from its children grouped by status (``status``, ``n``, ``started``,
    ``progress_sum``: how many, how many were ever claimed, the sum of their percents)."""
    counts = {status: 0 for status in ("queued", "running", *FINISHED_STATUSES)}
    started = 0
    percent_sum = 0.0
    for row in rows:
        n = int(row["n"])
        counts[row["status"]] = n
        if row["status"] in FINISHED_STATUSES:
            started += n
            percent_sum += 100.0 * n
        else:
            started += int(row["started"] or 0)
            percent_sum += float(row["progress_sum"] or 0.0)
    total = sum(counts.values())
    progress = round(percent_sum / total, 2) if total else 0.0
    unfinished = counts["queued"] + counts["running"]
    error = None
    status: JobStatus
    if total == 0 or (unfinished == total and started == 0):
        status = "queued"
    elif unfinished:
        status = "running"
    elif counts["failed"]:
        status = "failed"
        error = f"{counts['failed']} of {total} child jobs failed"
    elif counts["succeeded"]:
        status = "succeeded"
    else:
        status = "cancelled"
    return ParentState(status=status, progress=progress, counts=counts, error=error)


async def refresh_parent(conn: Connection, parent_id: int, now: datetime) -> Row | None:
    """Recompute the parent from its children; returns its row if that changed, else ``None``.

    Call it inside the transaction that changed the child, after that change: the parent's row is
    locked first (children before parent, everywhere, so two transactions never deadlock), and
    only then are the children read, so the last of two concurrent refreshes sees both changes.
    A finished parent keeps its status; its counts are still brought up to date.
    """
    before = await conn.fetch_one(
        "UPDATE jobs SET updated_at = updated_at WHERE id = :id AND is_parent = TRUE "
        "RETURNING status, progress, progress_data",
        {"id": parent_id},
    )
    if before is None:
        return None
    rows = await conn.fetch_all(
        """
        SELECT status, COUNT(*) AS n,
            SUM(CASE WHEN attempts > 0 THEN 1 ELSE 0 END) AS started,
            SUM(COALESCE(progress, 0)) AS progress_sum
        FROM jobs WHERE parent_id = :id GROUP BY status
        """,
        {"id": parent_id},
    )
    state = parent_state(rows)
    settled = before["status"] in FINISHED_STATUSES
    status = before["status"] if settled else state.status
    progress = float(before["progress"] or 0.0) if settled else state.progress
    changed = (status, progress, before["progress_data"]) != (
        before["status"],
        None if before["progress"] is None else float(before["progress"]),
        state.counts,
    )
    if not changed:
        return None
    finishing = not settled and status in FINISHED_STATUSES
    row = await conn.fetch_one(
        f"""
        UPDATE jobs SET status = :status, progress = :progress, progress_data = :counts,
            {"finished_at = :now, last_error = :error," if finishing else ""} updated_at = :now
        WHERE id = :id
        RETURNING *
        """,
        {
            "id": parent_id,
            "status": status,
            "progress": progress,
            "counts": state.counts,
            "now": now,
            **({"error": state.error} if finishing else {}),
        },
    )
    return row
