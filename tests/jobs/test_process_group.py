"""`run_process_group`: a job's program and the programs it started end with the job, whether the
job is cancelled or its worker stops; checked by pid."""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from medianest_server.db import Database
from medianest_server.jobs import Job, JobContext, JobQueue, Worker
from medianest_server.plugin_api import run_process_group
from tests.conftest import eventually

# A child that starts a grandchild in the background and prints both pids: killing the child
# alone would leave the grandchild running, reparented to init.
SPAWNER = ["sh", "-c", "sleep 60 & echo $$ $!; wait"]


def running(pid: int) -> bool:
    """Whether `pid` is a live process (a zombie waiting to be reaped is not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat[stat.rfind(")") + 2] not in "ZX"


async def gone(*pids: int) -> None:
    async def none_running() -> bool:
        return not any(running(pid) for pid in pids)

    await eventually(none_running, what=f"processes {pids} to end")


@pytest.fixture
def queue(db: Database) -> JobQueue:
    return JobQueue(db)


def spawner_job(pids: list[int], started: asyncio.Event, grace: float = 5.0):  # type: ignore[no-untyped-def]
    async def download(job: Job, ctx: JobContext) -> None:
        async with run_process_group(
            SPAWNER, stdout=asyncio.subprocess.PIPE, terminate_grace_seconds=grace
        ) as proc:
            assert proc.stdout is not None
            line = await proc.stdout.readline()
            pids.extend(int(pid) for pid in line.split())
            started.set()
            await proc.wait()

    return download


async def test_cancelling_the_job_kills_the_child_and_its_grandchild(queue: JobQueue) -> None:
    pids: list[int] = []
    started = asyncio.Event()
    job = await queue.enqueue("downloads", "download", {})
    worker = Worker(
        queue,
        queues=["downloads"],
        handlers={"download": spawner_job(pids, started)},
        lease_seconds=0.3,
    )
    await worker.start()
    try:
        async with asyncio.timeout(5):
            await started.wait()
        child, grandchild = pids
        assert running(child) and running(grandchild)
        assert os.getpgid(grandchild) == child  # the child leads the group

        assert await queue.cancel(job.id)  # the worker learns it at its next heartbeat
        await gone(child, grandchild)
    finally:
        await worker.stop()
    final = await queue.get(job.id)
    assert final is not None and final.status == "cancelled"


async def test_stopping_the_worker_kills_the_child_and_its_grandchild(queue: JobQueue) -> None:
    pids: list[int] = []
    started = asyncio.Event()
    job = await queue.enqueue("downloads", "download", {})
    worker = Worker(queue, queues=["downloads"], handlers={"download": spawner_job(pids, started)})
    await worker.start()
    async with asyncio.timeout(5):
        await started.wait()
    child, grandchild = pids
    await worker.stop(grace_seconds=0.05)  # shutdown: the handler is cancelled
    await gone(child, grandchild)
    released = await queue.get(job.id)
    assert released is not None and released.status == "queued"  # another worker will run it


async def test_a_group_that_ignores_sigterm_is_killed_after_the_grace() -> None:
    # The child traps SIGTERM and its grandchild ignores it (SIG_IGN is inherited).
    argv = ["sh", "-c", "trap '' TERM; sleep 60 & echo $$ $!; while :; do sleep 1; done"]
    pids: list[int] = []

    async def run() -> None:
        async with run_process_group(
            argv, stdout=asyncio.subprocess.PIPE, terminate_grace_seconds=0.3
        ) as proc:
            assert proc.stdout is not None
            pids.extend(int(pid) for pid in (await proc.stdout.readline()).split())
            await asyncio.Event().wait()

    task = asyncio.create_task(run())

    async def started() -> bool:
        return len(pids) == 2

    await eventually(started, what="the programs to start")
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    # leaving the block waited for the SIGKILL: nothing of the group is left
    assert not any(running(pid) for pid in pids)


async def test_leaving_the_block_normally_ends_what_the_program_left_behind() -> None:
    # the program exits at once, leaving a background grandchild in its group
    async with run_process_group(
        ["sh", "-c", "sleep 60 >/dev/null & echo $!"], stdout=asyncio.subprocess.PIPE
    ) as proc:
        assert proc.stdout is not None
        grandchild = int((await proc.stdout.readline()).strip())
        assert await proc.wait() == 0
        assert running(grandchild)
    await gone(grandchild)
