"""Jobs with children on SQLite and PostgreSQL: a parent (a playlist) whose state, progress and
completion follow its children (its videos); cancel cascades; one owner."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest

from medianest_server.clock import ManualClock
from medianest_server.db import Database
from medianest_server.jobs import Job, JobContext, JobQueue, JobSpec, Worker
from tests.conftest import eventually
from tests.jobs.conftest import make_user


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(db: Database, clock: ManualClock) -> JobQueue:
    return JobQueue(db, clock=clock, backoff_base_seconds=10.0)


async def parent_of(queue: JobQueue, parent_id: int) -> Job:
    parent = await queue.get(parent_id)
    assert parent is not None
    return parent


async def claim(queue: JobQueue, worker_id: str = "w") -> Job:
    job = await queue.claim(["downloads"], worker_id=worker_id, lease_seconds=30)
    assert job is not None
    return job


async def test_parent_state_and_progress_follow_its_children(
    db: Database, queue: JobQueue, clock: ManualClock
) -> None:
    alice = await make_user(db, "alice")
    parent = await queue.enqueue_parent(
        "downloads",
        "youtube.playlist",
        {"url": "https://example.invalid/list"},
        user_id=alice,
        children=[JobSpec("youtube.video", {"n": n}) for n in range(4)],
    )
    assert (parent.status, parent.progress, parent.is_parent) == ("queued", 0.0, True)
    assert parent.progress_data == {
        "queued": 4,
        "running": 0,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    children = await queue.children(parent.id)
    assert [c.payload["n"] for c in children] == [0, 1, 2, 3]
    # one owner: the children are the parent's owner's
    assert {(c.user_id, c.parent_id, c.status) for c in children} == {(alice, parent.id, "queued")}

    # never claimed itself: four claims take the four children
    first = await claim(queue)
    assert first.id == children[0].id
    assert (await parent_of(queue, parent.id)).status == "running"

    await queue.record_progress(first.id, worker_id="w", percent=50, data={"percent": 50})
    assert (await parent_of(queue, parent.id)).progress == 12.5  # (50 + 0 + 0 + 0) / 4

    assert await queue.complete(first.id, worker_id="w", result="a.mkv")
    second = await claim(queue)
    await queue.record_progress(second.id, worker_id="w", percent=20, data={})
    now = await parent_of(queue, parent.id)
    assert (now.status, now.progress) == ("running", 30.0)  # (100 + 20 + 0 + 0) / 4
    assert now.progress_data["succeeded"] == 1 and now.progress_data["running"] == 1

    # a failed attempt with attempts left is queued for its retry: the parent still runs
    retried = await queue.fail(second.id, worker_id="w", error="HTTP 503")
    assert retried is not None and retried.status == "queued"
    assert (await parent_of(queue, parent.id)).status == "running"

    third, fourth = await claim(queue), await claim(queue)
    assert {third.id, fourth.id} == {children[2].id, children[3].id}
    assert await queue.complete(third.id, worker_id="w")
    assert await queue.fail(fourth.id, worker_id="w", error="gone", retry=False)
    assert (await parent_of(queue, parent.id)).status == "running"  # the retry is left

    assert (await queue.claim(["downloads"], worker_id="w", lease_seconds=30)) is None
    clock.advance(60)
    last = await claim(queue)
    assert last.id == second.id
    assert await queue.complete(last.id, worker_id="w")

    # every child finished, one failed: the parent failed, and says why
    done = await parent_of(queue, parent.id)
    assert (done.status, done.progress, done.last_error) == (
        "failed",
        100.0,
        "1 of 4 child jobs failed",
    )
    assert done.finished_at == clock.now()
    assert done.progress_data == {
        "queued": 0,
        "running": 0,
        "succeeded": 3,
        "failed": 1,
        "cancelled": 0,
    }
    with pytest.raises(ValueError, match="has failed"):
        await queue.enqueue("downloads", "youtube.video", {}, parent_id=parent.id)


async def test_a_parent_whose_children_all_succeed_succeeds(queue: JobQueue) -> None:
    parent = await queue.enqueue_parent("downloads", "playlist", {})
    assert parent.status == "queued"  # no children yet
    a = await queue.enqueue("downloads", "video", {"n": 1}, parent_id=parent.id)
    b = await queue.enqueue("downloads", "video", {"n": 2}, parent_id=parent.id)
    assert a.parent_id == b.parent_id == parent.id
    for _ in range(2):
        job = await claim(queue)
        assert await queue.complete(job.id, worker_id="w")
    done = await parent_of(queue, parent.id)
    assert (done.status, done.progress, done.last_error) == ("succeeded", 100.0, None)


async def test_children_of_a_parent_run_by_a_worker(db: Database) -> None:
    queue = JobQueue(db)
    gate = asyncio.Event()

    async def video(job: Job, ctx: JobContext) -> str:
        if job.payload["n"] == 2:
            await gate.wait()
        return f"{job.payload['n']}.mkv"

    parent = await queue.enqueue_parent(
        "downloads", "playlist", {}, children=[JobSpec("video", {"n": n}) for n in range(3)]
    )
    worker = Worker(queue, queues=["downloads"], handlers={"video": video}, concurrency=3)
    await worker.start()
    try:

        async def two_done_one_running() -> bool:
            current = await parent_of(queue, parent.id)
            counts = current.progress_data
            return counts["succeeded"] == 2 and counts["running"] == 1

        await eventually(two_done_one_running, what="two children done")
        assert (await parent_of(queue, parent.id)).status == "running"
        gate.set()

        async def parent_succeeded() -> bool:
            return (await parent_of(queue, parent.id)).status == "succeeded"

        await eventually(parent_succeeded, what="the parent's success")
    finally:
        await worker.stop()
    results = sorted(c.result for c in await queue.children(parent.id))
    assert results == ["0.mkv", "1.mkv", "2.mkv"]


async def test_cancelling_a_parent_cancels_its_unfinished_children(
    db: Database, queue: JobQueue
) -> None:
    alice = await make_user(db, "alice")
    bob = await make_user(db, "bob")
    parent = await queue.enqueue_parent(
        "downloads",
        "playlist",
        {},
        user_id=alice,
        children=[JobSpec("video", {"n": n}) for n in range(3)],
    )
    done = await claim(queue)
    assert await queue.complete(done.id, worker_id="w")
    running = await claim(queue)

    assert await queue.cancel(parent.id, user_id=bob) is False  # not bob's
    assert await queue.cancel(parent.id, user_id=alice)
    statuses = {c.id: c.status for c in await queue.children(parent.id)}
    assert statuses[done.id] == "succeeded"  # finished children keep their outcome
    assert statuses[running.id] == "cancelled"
    assert sorted(statuses.values()) == ["cancelled", "cancelled", "succeeded"]
    cancelled = await parent_of(queue, parent.id)
    assert cancelled.status == "cancelled" and cancelled.finished_at is not None
    assert cancelled.progress_data["cancelled"] == 2

    # the running child's worker loses it; nothing brings the parent back
    assert await queue.heartbeat(running.id, worker_id="w", lease_seconds=30) is False
    assert await queue.complete(running.id, worker_id="w") is False
    assert await queue.claim(["downloads"], worker_id="w", lease_seconds=30) is None
    assert (await parent_of(queue, parent.id)).status == "cancelled"
    with pytest.raises(ValueError, match="has cancelled"):
        await queue.enqueue("downloads", "video", {}, parent_id=parent.id)


async def test_cancel_cascade_stops_running_children_in_a_worker(db: Database) -> None:
    queue = JobQueue(db)
    started: set[int] = set()
    stopped: set[int] = set()

    async def video(job: Job, ctx: JobContext) -> None:
        started.add(job.id)
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped.add(job.id)
            raise

    parent = await queue.enqueue_parent(
        "downloads", "playlist", {}, children=[JobSpec("video", {}) for _ in range(3)]
    )
    worker = Worker(
        queue, queues=["downloads"], handlers={"video": video}, concurrency=2, lease_seconds=0.3
    )
    await worker.start()
    try:

        async def two_started() -> bool:
            return len(started) == 2

        await eventually(two_started, what="two children running")
        assert await queue.cancel(parent.id)

        async def handlers_stopped() -> bool:
            return stopped == started and not worker.running_jobs

        await eventually(handlers_stopped, what="the running children to stop")
    finally:
        await worker.stop()
    assert len(started) == 2  # the third child never ran
    children = await queue.children(parent.id)
    assert {c.status for c in children} == {"cancelled"}
    assert (await parent_of(queue, parent.id)).status == "cancelled"


async def test_cancelling_every_child_cancels_the_parent(queue: JobQueue) -> None:
    parent = await queue.enqueue_parent(
        "downloads", "playlist", {}, children=[JobSpec("video", {}), JobSpec("video", {})]
    )
    first, second = await queue.children(parent.id)
    assert await queue.cancel(first.id)
    assert (await parent_of(queue, parent.id)).status == "running"  # one child settled
    assert await queue.cancel(second.id)
    assert (await parent_of(queue, parent.id)).status == "cancelled"


async def test_children_belong_to_the_parents_owner(db: Database, queue: JobQueue) -> None:
    alice = await make_user(db, "alice")
    bob = await make_user(db, "bob")
    parent = await queue.enqueue_parent("downloads", "playlist", {}, user_id=alice)
    child = await queue.enqueue("downloads", "video", {}, parent_id=parent.id)
    assert child.user_id == alice
    with pytest.raises(ValueError, match="parent's owner"):
        await queue.enqueue("downloads", "video", {}, parent_id=parent.id, user_id=bob)
    with pytest.raises(ValueError, match="no parent job"):
        await queue.enqueue("downloads", "video", {}, parent_id=child.id)  # not a parent
    assert await queue.children(parent.id, user_id=bob) == []
    assert [c.id for c in await queue.children(parent.id, user_id=alice)] == [child.id]

    # a list shows the playlist once with top_level; deleting the owner deletes them all
    top = await queue.list(user_id=alice, top_level=True)
    assert [j.id for j in top] == [parent.id]
    assert {j.id for j in await queue.list(user_id=alice)} == {parent.id, child.id}
    await db.execute("DELETE FROM users WHERE id = :id", {"id": alice})
    assert await queue.get(parent.id) is None and await queue.get(child.id) is None


async def test_purge_removes_a_finished_parent_with_its_children(
    queue: JobQueue, clock: ManualClock
) -> None:
    parent = await queue.enqueue_parent(
        "downloads", "playlist", {}, children=[JobSpec("video", {}), JobSpec("video", {})]
    )
    first = await claim(queue)
    assert await queue.complete(first.id, worker_id="w")
    clock.advance(3600)
    # the finished child stays while its parent still counts it
    assert await queue.purge_finished(older_than=timedelta(seconds=60)) == 0
    second = await claim(queue)
    assert await queue.complete(second.id, worker_id="w")
    clock.advance(3600)
    assert await queue.purge_finished(older_than=timedelta(seconds=60)) == 1
    assert await queue.get(parent.id) is None
    assert await queue.children(parent.id) == []


async def test_children_finishing_at_once_settle_the_parent(queue: JobQueue) -> None:
    parent = await queue.enqueue_parent(
        "downloads", "playlist", {}, children=[JobSpec("video", {}) for _ in range(20)]
    )
    claimed = [await claim(queue, f"w{n}") for n in range(20)]
    # on PostgreSQL these run in parallel transactions: the last one must see every other
    results = await asyncio.gather(
        *(queue.complete(job.id, worker_id=f"w{n}") for n, job in enumerate(claimed))
    )
    assert all(results)
    done = await parent_of(queue, parent.id)
    assert (done.status, done.progress) == ("succeeded", 100.0)
    assert done.progress_data["succeeded"] == 20
