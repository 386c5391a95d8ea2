"""Progress a handler reports reaches the job's owner on SQLite and PostgreSQL: stored on the job's
row (what a GET of the job shows) and published on `user:<owner>`, at a bounded rate."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from typing import Any

import pytest

from medianest_server.db import Database
from medianest_server.events import Event, MemoryEventBus, Subscription
from medianest_server.jobs import JOB_UPDATED, Job, JobContext, JobQueue, JobSpec, Worker
from tests.conftest import eventually
from tests.jobs.conftest import make_user


@pytest.fixture
async def events() -> AsyncIterator[MemoryEventBus]:
    bus = MemoryEventBus()
    await bus.start()
    yield bus
    await bus.close()


@pytest.fixture
def queue(db: Database, events: MemoryEventBus) -> JobQueue:
    return JobQueue(db, events=events)


async def next_update(sub: Subscription, *, job_id: int, where: str = "") -> Event:
    """The next `core.job.updated` event of `job_id` on `sub` (others are skipped)."""
    async with asyncio.timeout(5):
        while True:
            event = await sub.get()
            assert event is not None, f"no update of job {job_id} {where}"
            if event.type == JOB_UPDATED and event.data["job_id"] == job_id:
                return event


async def test_progress_reaches_the_owner_row_and_live_event(
    db: Database, queue: JobQueue, events: MemoryEventBus
) -> None:
    alice = await make_user(db, "alice")
    bob = await make_user(db, "bob")
    reported = asyncio.Event()
    gate = asyncio.Event()
    callback: list[dict[str, Any]] = []

    async def video(job: Job, ctx: JobContext) -> str:
        await ctx.progress({"percent": 40, "bytes": 400, "total_bytes": 1000})
        reported.set()
        await gate.wait()
        return "v.mkv"

    async def on_progress(job: Job, data: Mapping[str, Any]) -> None:
        callback.append(dict(data))

    parent = await queue.enqueue_parent(
        "downloads",
        "playlist",
        {},
        user_id=alice,
        children=[JobSpec("video", {}), JobSpec("video", {}, queue="later")],
    )
    child, _ = await queue.children(parent.id)
    mine = events.subscribe(topics=[f"user:{alice}"], types=[JOB_UPDATED])
    theirs = events.subscribe(topics=[f"user:{bob}"])
    worker = Worker(queue, queues=["downloads"], handlers={"video": video}, on_progress=on_progress)
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await reported.wait()
        event = await next_update(mine, job_id=child.id, where="(running)")
        assert event.data["status"] == "running"
        event = await next_update(mine, job_id=child.id, where="(progress)")
        assert event.topic == f"user:{alice}"
        assert event.data == {
            "job_id": child.id,
            "parent_id": parent.id,
            "queue": "downloads",
            "kind": "video",
            "status": "running",
            "progress": 40.0,
            "progress_data": {"percent": 40, "bytes": 400, "total_bytes": 1000},
        }
        # the parent's page moves too: the mean of 40 and 0
        event = await next_update(mine, job_id=parent.id, where="(the parent)")
        while event.data["progress"] != 20.0:
            event = await next_update(mine, job_id=parent.id, where="(the parent at 20 %)")
        assert event.data["status"] == "running"

        stored = await queue.get(child.id, user_id=alice)  # what GET of the job shows
        assert stored is not None
        assert (stored.progress, stored.progress_data["bytes"]) == (40.0, 400)
        assert (await queue.get(parent.id)).progress == 20.0  # type: ignore[union-attr]
        gate.set()
        event = await next_update(mine, job_id=child.id, where="(finished)")
        assert (event.data["status"], event.data["progress"]) == ("succeeded", 100.0)
    finally:
        await worker.stop()
    assert callback == [{"percent": 40, "bytes": 400, "total_bytes": 1000}]
    assert await theirs.get(timeout=0) is None  # nothing of alice's reached bob
    mine.close()
    theirs.close()


async def test_progress_of_a_job_of_nobody_goes_to_admins(
    queue: JobQueue, events: MemoryEventBus
) -> None:
    admins = events.subscribe(topics=["admins"], types=[JOB_UPDATED])

    async def sync(job: Job, ctx: JobContext) -> None:
        await ctx.progress({"percent": 75})

    job = await queue.enqueue("sync", "sync", {})
    await Worker(queue, queues=["sync"], handlers={"sync": sync}).run_until_idle()
    seen = []
    while (event := await admins.get(timeout=0)) is not None:
        seen.append((event.data["status"], event.data["progress"]))
    assert seen == [("running", None), ("running", 75.0), ("succeeded", 100.0)]
    stored = await queue.get(job.id)
    assert stored is not None and stored.progress == 100.0
    admins.close()


async def test_progress_writes_are_throttled_and_the_latest_lands(
    db: Database, queue: JobQueue, events: MemoryEventBus
) -> None:
    alice = await make_user(db, "alice")
    done_reporting = asyncio.Event()
    gate = asyncio.Event()

    async def video(job: Job, ctx: JobContext) -> None:
        for step in range(1, 1001):  # 0.01 % at a time up to 10 %, as fast as it can
            await ctx.progress({"percent": step / 100})
        done_reporting.set()
        await gate.wait()

    job = await queue.enqueue("downloads", "video", {}, user_id=alice)
    updates = events.subscribe(topics=[f"user:{alice}"], types=[JOB_UPDATED])
    worker = Worker(queue, queues=["downloads"], handlers={"video": video})
    await worker.start()
    try:
        async with asyncio.timeout(10):
            await done_reporting.wait()

        async def latest_stored() -> bool:
            current = await queue.get(job.id)
            return current is not None and current.progress == 10.0

        # the last report was held back (less than a step, within 0.5 s): it still lands
        await eventually(latest_stored, what="the last report to be stored")
        gate.set()

        async def succeeded() -> bool:
            current = await queue.get(job.id)
            return current is not None and current.status == "succeeded"

        await eventually(succeeded, what="the job to finish")
    finally:
        await worker.stop()
    progress_events = []
    while (event := await updates.get(timeout=0)) is not None:
        if event.data["status"] == "running" and event.data["progress"] is not None:
            progress_events.append(event.data["progress"])
    # one write per whole percent (plus a few for time passing), not 1,000
    assert 10 <= len(progress_events) <= 40, progress_events
    assert progress_events[-1] == 10.0
    assert progress_events == sorted(progress_events)
    updates.close()


async def test_a_bad_percent_is_the_handlers_error(queue: JobQueue) -> None:
    async def video(job: Job, ctx: JobContext) -> None:
        await ctx.progress({"percent": "half"})

    job = await queue.enqueue("downloads", "video", {}, max_attempts=1)
    await Worker(queue, queues=["downloads"], handlers={"video": video}).run_until_idle()
    failed = await queue.get(job.id)
    assert failed is not None and failed.status == "failed"
    assert failed.last_error is not None and "'percent' must be a number" in failed.last_error
