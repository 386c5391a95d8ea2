"""The Worker running real handlers on SQLite and PostgreSQL: outcomes, heartbeats, cancel, stop,
and a worker process killed mid-job whose job another worker finishes."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from medianest_server.db import Database
from medianest_server.jobs import Job, JobContext, JobQueue, Worker
from tests.conftest import eventually
from tests.jobs.conftest import make_user

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def queue(db: Database) -> JobQueue:
    return JobQueue(db, backoff_base_seconds=60.0)


async def status_of(queue: JobQueue, job_id: int) -> str | None:
    job = await queue.get(job_id)
    return None if job is None else job.status


async def test_worker_records_results_failures_and_unknown_kinds(
    queue: JobQueue, caplog: pytest.LogCaptureFixture
) -> None:
    progress: list[tuple[int, dict[str, Any]]] = []
    finished: list[Job] = []

    async def on_progress(job: Job, data: Mapping[str, Any]) -> None:
        progress.append((job.id, dict(data)))

    async def on_finished(job: Job) -> None:
        finished.append(job)

    async def download(job: Job, ctx: JobContext) -> dict[str, Any]:
        await ctx.progress({"percent": 50})
        return {"file": f"{job.payload['name']}.mkv"}

    async def broken(job: Job, ctx: JobContext) -> None:
        raise RuntimeError("disk full")

    worker = Worker(
        queue,
        queues=["downloads"],
        handlers={"download": download},
        on_progress=on_progress,
        on_finished=on_finished,
    )
    worker.register("broken", broken)
    ok = await queue.enqueue("downloads", "download", {"name": "clip"})
    bad = await queue.enqueue("downloads", "broken", {})
    unknown = await queue.enqueue("downloads", "mystery", {})

    await worker.run_until_idle()

    done = await queue.get(ok.id)
    assert done is not None and (done.status, done.result) == ("succeeded", {"file": "clip.mkv"})
    assert progress == [(ok.id, {"percent": 50})]
    retried = await queue.get(bad.id)
    assert retried is not None
    assert (retried.status, retried.last_error) == ("queued", "RuntimeError: disk full")
    failed = await queue.get(unknown.id)
    assert failed is not None
    assert (failed.status, failed.last_error) == ("failed", "no handler for kind 'mystery'")
    assert sorted((job.id, job.status) for job in finished) == [
        (ok.id, "succeeded"),
        (unknown.id, "failed"),
    ]
    # each failure logged once, with the job's id, kind and error
    messages = [r.getMessage() for r in caplog.records if r.name == "medianest.jobs"]
    assert len(messages) == 2
    assert any(f"job {bad.id} (broken)" in m and "RuntimeError: disk full" in m for m in messages)
    assert any(f"job {unknown.id} (mystery)" in m and "no handler" in m for m in messages)


async def test_worker_runs_at_most_concurrency_jobs_at_once(queue: JobQueue) -> None:
    running = 0
    most = 0
    gate = asyncio.Event()

    async def download(job: Job, ctx: JobContext) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await gate.wait()
        running -= 1

    jobs = [await queue.enqueue("downloads", "download", {}) for _ in range(5)]
    worker = Worker(queue, queues=["downloads"], handlers={"download": download}, concurrency=2)
    await worker.start()
    try:

        async def two_running() -> bool:
            return running == 2

        await eventually(two_running, what="two jobs running")
        gate.set()

        async def all_done() -> bool:
            statuses = {await status_of(queue, job.id) for job in jobs}
            return statuses == {"succeeded"}

        await eventually(all_done, what="every job done")
    finally:
        await worker.stop()
    assert most == 2


async def test_worker_wakes_when_a_job_is_enqueued(queue: JobQueue) -> None:
    ran = asyncio.Event()

    async def download(job: Job, ctx: JobContext) -> None:
        ran.set()

    # A 60 s poll: the job can only run in time because enqueue() wakes the worker.
    worker = Worker(
        queue, queues=["downloads"], handlers={"download": download}, poll_interval_seconds=60
    )
    await worker.start()
    try:
        await asyncio.sleep(0)  # let the first (empty) claim start
        await queue.enqueue("downloads", "download", {})
        async with asyncio.timeout(5):
            await ran.wait()
    finally:
        await worker.stop()


async def test_heartbeat_keeps_a_long_job_leased(queue: JobQueue) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def download(job: Job, ctx: JobContext) -> str:
        started.set()
        await gate.wait()
        return "done"

    job = await queue.enqueue("downloads", "download", {})
    worker = Worker(queue, queues=["downloads"], handlers={"download": download}, lease_seconds=0.3)
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await started.wait()
        first = await queue.get(job.id)
        assert first is not None and first.lease_expires_at is not None

        async def renewed_past_first_lease() -> bool:
            current = await queue.get(job.id)
            assert current is not None and first.lease_expires_at is not None
            return (
                current.lease_expires_at is not None
                and (current.lease_expires_at - first.lease_expires_at).total_seconds() > 0.6
            )

        # renewed for more than twice the lease: the job outlived its first lease
        await eventually(renewed_past_first_lease, what="lease renewals")
        assert await queue.claim(["downloads"], worker_id="other", lease_seconds=1) is None
        gate.set()

        async def succeeded() -> bool:
            return await status_of(queue, job.id) == "succeeded"

        await eventually(succeeded, what="job success")
    finally:
        await worker.stop()
    final = await queue.get(job.id)
    assert final is not None and (final.attempts, final.result) == (1, "done")


async def test_cancelling_a_running_job_stops_its_handler(db: Database, queue: JobQueue) -> None:
    alice = await make_user(db, "alice")
    started = asyncio.Event()
    stopped = asyncio.Event()
    seen_cancelled: list[bool] = []
    finished: list[Job] = []

    async def download(job: Job, ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            seen_cancelled.append(ctx.is_cancelled)
            stopped.set()
            raise

    async def on_finished(job: Job) -> None:
        finished.append(job)

    job = await queue.enqueue("downloads", "download", {}, user_id=alice)
    worker = Worker(
        queue,
        queues=["downloads"],
        handlers={"download": download},
        lease_seconds=0.3,
        on_finished=on_finished,
    )
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await started.wait()
        assert await queue.cancel(job.id, user_id=alice)
        async with asyncio.timeout(5):  # the next heartbeat (every 0.1 s) notices
            await stopped.wait()

        async def reported() -> bool:
            return bool(finished)

        await eventually(reported, what="on_finished")
    finally:
        await worker.stop()
    assert seen_cancelled == [True]
    assert [(j.id, j.status) for j in finished] == [(job.id, "cancelled")]
    final = await queue.get(job.id)
    assert final is not None and final.status == "cancelled" and final.result is None


async def test_stop_hands_running_jobs_back_to_the_queue(queue: JobQueue) -> None:
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def download(job: Job, ctx: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    job = await queue.enqueue("downloads", "download", {})
    worker = Worker(queue, queues=["downloads"], handlers={"download": download})
    await worker.start()
    async with asyncio.timeout(5):
        await started.wait()
    await worker.stop(grace_seconds=0.05)
    assert cancelled.is_set()

    released = await queue.get(job.id)
    assert released is not None
    assert (released.status, released.attempts, released.lease_expires_at) == ("queued", 0, None)
    # another worker takes it at once, the interrupted attempt not charged
    taken = await queue.claim(["downloads"], worker_id="next", lease_seconds=30)
    assert taken is not None and (taken.id, taken.attempts) == (job.id, 1)


async def test_stop_lets_a_job_finish_within_the_grace_period(queue: JobQueue) -> None:
    started = asyncio.Event()
    gate = asyncio.Event()

    async def download(job: Job, ctx: JobContext) -> str:
        started.set()
        await gate.wait()
        return "finished"

    job = await queue.enqueue("downloads", "download", {})
    worker = Worker(queue, queues=["downloads"], handlers={"download": download})
    await worker.start()
    async with asyncio.timeout(5):
        await started.wait()
    stopping = asyncio.create_task(worker.stop(grace_seconds=10))
    await asyncio.sleep(0)  # stop() has begun: no more claims
    gate.set()
    async with asyncio.timeout(5):
        await stopping
    done = await queue.get(job.id)
    assert done is not None and (done.status, done.result) == ("succeeded", "finished")


async def test_job_of_a_killed_worker_process_is_finished_by_another_worker(
    database_url: str, db: Database, queue: JobQueue, tmp_path: Path
) -> None:
    started_file = tmp_path / "started"
    log = (tmp_path / "worker.log").open("wb")
    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.jobs.worker_process",
        database_url,
        str(tmp_path),
        str(started_file),
        cwd=REPO_ROOT,
        stdout=log,
        stderr=log,
    )
    worker: Worker | None = None
    try:
        job = await queue.enqueue("downloads", "download", {"url": "https://example.invalid/v"})

        async def handler_started() -> bool:
            if process.returncode is not None:
                pytest.fail(f"worker process exited: {(tmp_path / 'worker.log').read_text()}")
            return started_file.exists()

        await eventually(handler_started, within=20, what="the worker process's handler")
        process.kill()  # SIGKILL: no cleanup, no release
        await process.wait()
        job_id, dead_worker = started_file.read_text().split()
        assert int(job_id) == job.id

        orphan = await queue.get(job.id)
        assert orphan is not None and orphan.lease_expires_at is not None
        assert (orphan.status, orphan.worker_id, orphan.attempts) == ("running", dead_worker, 1)

        async def download(job: Job, ctx: JobContext) -> dict[str, str]:
            return {"file": "v.mkv"}

        worker = Worker(
            queue,
            queues=["downloads"],
            handlers={"download": download},
            lease_seconds=1.0,
            poll_interval_seconds=0.05,
        )
        await worker.start()

        async def finished() -> bool:
            return await status_of(queue, job.id) == "succeeded"

        await eventually(finished, within=10, what="the orphaned job to finish")
    finally:
        if worker is not None:
            await worker.stop()
        if process.returncode is None:
            process.kill()
            await process.wait()
        log.close()
    done = await queue.get(job.id)
    assert done is not None and done.finished_at is not None
    assert (done.worker_id, done.attempts, done.result) == (worker.worker_id, 2, {"file": "v.mkv"})
    assert done.finished_at >= orphan.lease_expires_at  # not taken before the lease ran out
    assert done.last_error == "worker lost (lease expired) during attempt 1"
