"""Leases on SQLite and PostgreSQL: a long job keeps its lease while it runs and runs once; a dead
worker's job is claimed again exactly once; a worker that cannot renew stops in time."""

from __future__ import annotations

import asyncio
from collections import Counter
from datetime import UTC, datetime

from medianest_server.clock import ManualClock
from medianest_server.db import Database
from medianest_server.jobs import Job, JobContext, JobQueue, Worker
from tests.conftest import eventually


async def test_a_long_job_heartbeats_past_its_lease_and_runs_once(db: Database) -> None:
    queue = JobQueue(db)
    runs: Counter[str] = Counter()
    gate = asyncio.Event()
    workers: list[Worker] = []

    def make_handler(name: str):  # type: ignore[no-untyped-def]
        async def download(job: Job, ctx: JobContext) -> str:
            runs[name] += 1
            await gate.wait()  # a download far longer than its lease
            return "done"

        return download

    job = await queue.enqueue("downloads", "download", {})
    for name in ("first", "second"):
        workers.append(
            Worker(
                queue,
                queues=["downloads"],
                handlers={"download": make_handler(name)},
                worker_id=name,
                lease_seconds=0.3,
                poll_interval_seconds=0.02,
            )
        )
    await workers[0].start()
    try:

        async def started() -> bool:
            return sum(runs.values()) == 1

        await eventually(started, what="the download to start")
        await workers[1].start()  # a second worker polls every 20 ms the whole time
        first = await queue.get(job.id)
        assert first is not None and first.lease_expires_at is not None

        async def outlived_three_leases() -> bool:
            current = await queue.get(job.id)
            assert current is not None and current.lease_expires_at is not None
            assert first.lease_expires_at is not None
            return (current.lease_expires_at - first.lease_expires_at).total_seconds() > 0.9

        await eventually(outlived_three_leases, what="lease renewals past three leases")
        gate.set()

        async def succeeded() -> bool:
            current = await queue.get(job.id)
            return current is not None and current.status == "succeeded"

        await eventually(succeeded, what="the download to finish")
    finally:
        for worker in workers:
            await worker.stop()
    assert runs == Counter({"first": 1})
    done = await queue.get(job.id)
    assert done is not None
    assert (done.attempts, done.worker_id, done.result, done.last_error) == (
        1,
        "first",
        "done",
        None,
    )


async def test_a_dead_workers_job_is_claimed_again_once(db: Database) -> None:
    queue = JobQueue(db)
    runs: Counter[str] = Counter()

    job = await queue.enqueue("downloads", "download", {})
    # a worker claims the job and dies: no heartbeat, no release
    dead = await queue.claim(["downloads"], worker_id="dead", lease_seconds=0.3)
    assert dead is not None and dead.lease_expires_at is not None

    def make_handler(name: str):  # type: ignore[no-untyped-def]
        async def download(job: Job, ctx: JobContext) -> str:
            runs[name] += 1
            return name

        return download

    workers = [
        Worker(
            queue,
            queues=["downloads"],
            handlers={"download": make_handler(f"w{n}")},
            worker_id=f"w{n}",
            poll_interval_seconds=0.01,
        )
        for n in range(4)
    ]
    for worker in workers:
        await worker.start()
    try:

        async def succeeded() -> bool:
            current = await queue.get(job.id)
            return current is not None and current.status == "succeeded"

        await eventually(succeeded, what="the orphaned job to be finished")
    finally:
        for worker in workers:
            await worker.stop()
    assert sum(runs.values()) == 1  # four workers polling: one of them ran it
    done = await queue.get(job.id)
    assert done is not None and done.finished_at is not None
    assert (done.attempts, done.result) == (2, done.worker_id)
    assert done.last_error == "worker lost (lease expired) during attempt 1"
    assert done.finished_at >= dead.lease_expires_at  # not before the lease ran out


async def test_an_expired_lease_is_claimed_by_one_of_many_claimers(db: Database) -> None:
    clock = ManualClock()
    queue = JobQueue(db, clock=clock)
    job = await queue.enqueue("downloads", "download", {})
    assert await queue.claim(["downloads"], worker_id="dead", lease_seconds=30) is not None

    async def claim(name: str) -> Job | None:
        return await queue.claim(["downloads"], worker_id=name, lease_seconds=30)

    # within the lease nobody gets it
    assert [j for j in await asyncio.gather(*(claim(f"w{n}") for n in range(10))) if j] == []
    clock.advance(30)
    claimed = [j for j in await asyncio.gather(*(claim(f"w{n}") for n in range(20))) if j]
    assert len(claimed) == 1
    assert (claimed[0].id, claimed[0].attempts) == (job.id, 2)
    # the dead worker, back from the dead, finds its job gone
    assert await queue.heartbeat(job.id, worker_id="dead", lease_seconds=30) is False
    assert await queue.complete(job.id, worker_id="dead") is False


class UnreachableHeartbeats(JobQueue):
    """A queue whose database stops answering heartbeats once `broken` is set."""

    broken = False

    async def heartbeat(self, job_id: int, *, worker_id: str, lease_seconds: float) -> bool:
        if self.broken:
            raise ConnectionError("database unreachable")
        return await super().heartbeat(job_id, worker_id=worker_id, lease_seconds=lease_seconds)


async def test_a_worker_that_cannot_renew_stops_the_job_before_its_lease_ends(
    db: Database,
) -> None:
    queue = UnreachableHeartbeats(db)
    started = asyncio.Event()
    stopped_at: list[datetime] = []

    async def download(job: Job, ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            stopped_at.append(datetime.now(UTC))
            raise

    job = await queue.enqueue("downloads", "download", {})
    worker = Worker(queue, queues=["downloads"], handlers={"download": download}, lease_seconds=0.6)
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await started.wait()
        queue.broken = True

        async def stopped() -> bool:
            return bool(stopped_at)

        await eventually(stopped, what="the handler to stop")
    finally:
        await worker.stop()
    held = await queue.get(job.id)
    assert held is not None and held.lease_expires_at is not None
    # stopped while its last lease still held: no other worker could have started it yet
    assert stopped_at[0] < held.lease_expires_at
