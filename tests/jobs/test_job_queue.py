"""The durable job queue on SQLite and PostgreSQL: claims, leases, retries, cancel, ownership."""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

import pytest

from medianest_server.clock import ManualClock
from medianest_server.db import Database
from medianest_server.jobs import MAX_ERROR_CHARS, JobQueue
from tests.jobs.conftest import make_user


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def queue(db: Database, clock: ManualClock) -> JobQueue:
    return JobQueue(db, clock=clock, backoff_base_seconds=10.0, backoff_max_seconds=100.0)


async def test_enqueue_claim_complete(queue: JobQueue, clock: ManualClock) -> None:
    job = await queue.enqueue("downloads", "youtube.video", {"url": "https://example.invalid/v"})
    assert (job.status, job.attempts, job.max_attempts, job.priority) == ("queued", 0, 3, 0)
    assert job.payload == {"url": "https://example.invalid/v"}
    assert job.run_after == clock.now() == job.created_at

    claimed = await queue.claim(["downloads"], worker_id="w1", lease_seconds=30)
    assert claimed is not None and claimed.id == job.id
    assert (claimed.status, claimed.attempts, claimed.worker_id) == ("running", 1, "w1")
    assert claimed.lease_expires_at == clock.now() + timedelta(seconds=30)
    assert await queue.claim(["downloads"], worker_id="w2", lease_seconds=30) is None

    clock.advance(5)
    assert await queue.complete(job.id, worker_id="w2", result=1) is False  # not w2's job
    assert await queue.complete(job.id, worker_id="w1", result={"file": "v.mkv", "bytes": 12})
    done = await queue.get(job.id)
    assert done is not None
    assert (done.status, done.result, done.lease_expires_at) == (
        "succeeded",
        {"file": "v.mkv", "bytes": 12},
        None,
    )
    assert done.finished_at == clock.now()
    assert await queue.complete(job.id, worker_id="w1") is False  # already finished
    assert await queue.heartbeat(job.id, worker_id="w1", lease_seconds=30) is False


async def test_claim_takes_priority_then_oldest_run_after_and_only_due_jobs(
    queue: JobQueue, clock: ManualClock
) -> None:
    now = clock.now()
    plain = await queue.enqueue("downloads", "k", {"n": "plain"})
    urgent = await queue.enqueue("downloads", "k", {"n": "urgent"}, priority=5)
    older = await queue.enqueue("downloads", "k", {}, run_after=now - timedelta(seconds=10))
    later = await queue.enqueue(
        "downloads", "k", {}, priority=9, run_after=now + timedelta(seconds=60)
    )
    elsewhere = await queue.enqueue("sync", "k", {}, priority=100)

    order = []
    while (job := await queue.claim(["downloads"], worker_id="w", lease_seconds=30)) is not None:
        order.append(job.id)
    assert order == [urgent.id, older.id, plain.id]

    clock.advance(60)
    job = await queue.claim(["downloads"], worker_id="w", lease_seconds=300)
    assert job is not None and job.id == later.id
    job = await queue.claim(["sync", "downloads"], worker_id="w", lease_seconds=300)
    assert job is not None and job.id == elsewhere.id


async def test_concurrent_claims_never_hand_out_a_job_twice(queue: JobQueue) -> None:
    jobs = [await queue.enqueue("downloads", "k", {"n": n}) for n in range(100)]
    claimed: list[int] = []
    empty = 0

    async def claimer(name: str) -> None:
        nonlocal empty
        for _ in range(10):
            job = await queue.claim(["downloads"], worker_id=name, lease_seconds=60)
            if job is None:
                empty += 1
            else:
                assert job.worker_id == name and job.attempts == 1
                claimed.append(job.id)

    await asyncio.gather(*(claimer(f"w{i}") for i in range(20)))
    assert len(claimed) == 100 and empty == 100
    assert sorted(claimed) == sorted(job.id for job in jobs)
    running = await queue.list(statuses=["running"], limit=500)
    assert len(running) == 100 and all(job.attempts == 1 for job in running)


async def test_failed_attempt_is_retried_after_backoff(queue: JobQueue, clock: ManualClock) -> None:
    job = await queue.enqueue("downloads", "k", {})
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    failed = await queue.fail(job.id, worker_id="w", error="HTTP 503")
    assert failed is not None
    assert (failed.status, failed.last_error, failed.attempts) == ("queued", "HTTP 503", 1)
    # base 10 s * 2**0, jitter 0.8..1.2
    delay = (failed.run_after - clock.now()).total_seconds()
    assert 8.0 <= delay <= 12.0

    assert await queue.claim(["downloads"], worker_id="w", lease_seconds=30) is None
    clock.advance(7.9)
    assert await queue.claim(["downloads"], worker_id="w", lease_seconds=30) is None
    clock.advance(4.2)
    again = await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    assert again is not None and (again.id, again.attempts) == (job.id, 2)

    failed = await queue.fail(job.id, worker_id="w", error="HTTP 503")
    assert failed is not None
    delay = (failed.run_after - clock.now()).total_seconds()
    assert 16.0 <= delay <= 24.0  # doubled


async def test_backoff_is_capped(db: Database, clock: ManualClock) -> None:
    queue = JobQueue(db, clock=clock, backoff_base_seconds=10.0, backoff_max_seconds=25.0)
    assert all(20.0 <= queue.backoff_seconds(5) <= 30.0 for _ in range(50))
    assert all(queue.backoff_seconds(10_000) <= 30.0 for _ in range(50))


async def test_job_fails_for_good_after_max_attempts(
    queue: JobQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    job = await queue.enqueue("downloads", "youtube.video", {}, max_attempts=2)
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    await queue.fail(job.id, worker_id="w", error="first")
    clock.advance(100)
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    caplog.clear()
    failed = await queue.fail(job.id, worker_id="w", error="x" * 5000)
    assert failed is not None
    assert (failed.status, failed.attempts, failed.finished_at) == ("failed", 2, clock.now())
    assert failed.last_error is not None and len(failed.last_error) == MAX_ERROR_CHARS
    clock.advance(1000)
    assert await queue.claim(["downloads"], worker_id="w", lease_seconds=30) is None

    records = [r for r in caplog.records if r.name == "medianest.jobs"]
    assert len(records) == 1 and records[0].levelno == logging.ERROR
    message = records[0].getMessage()
    assert f"job {job.id} " in message and "youtube.video" in message and "xxxx" in message


async def test_fail_without_retry_fails_at_once(queue: JobQueue) -> None:
    job = await queue.enqueue("downloads", "k", {}, max_attempts=5)
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    assert await queue.fail(job.id, worker_id="other", error="nope") is None
    failed = await queue.fail(job.id, worker_id="w", error="bad URL", retry=False)
    assert failed is not None and (failed.status, failed.last_error) == ("failed", "bad URL")


async def test_expired_lease_is_reclaimed_and_the_old_worker_loses_it(
    queue: JobQueue, clock: ManualClock
) -> None:
    job = await queue.enqueue("downloads", "k", {})
    await queue.claim(["downloads"], worker_id="dead", lease_seconds=10)
    clock.advance(5)
    assert await queue.heartbeat(job.id, worker_id="dead", lease_seconds=10)  # now +10 from here
    clock.advance(9)
    assert await queue.claim(["downloads"], worker_id="w2", lease_seconds=10) is None
    clock.advance(2)
    taken = await queue.claim(["downloads"], worker_id="w2", lease_seconds=10)
    assert taken is not None and (taken.worker_id, taken.attempts) == ("w2", 2)
    assert taken.last_error == "worker lost (lease expired) during attempt 1"
    assert await queue.heartbeat(job.id, worker_id="dead", lease_seconds=10) is False
    assert await queue.complete(job.id, worker_id="dead") is False
    assert await queue.complete(job.id, worker_id="w2")


async def test_reclaimed_job_without_attempts_left_fails(
    queue: JobQueue, clock: ManualClock, caplog: pytest.LogCaptureFixture
) -> None:
    lost = await queue.enqueue("downloads", "k", {}, max_attempts=1, priority=1)
    waiting = await queue.enqueue("downloads", "k", {})
    await queue.claim(["downloads"], worker_id="dead", lease_seconds=10)
    clock.advance(11)
    taken = await queue.claim(["downloads"], worker_id="w2", lease_seconds=10)
    assert taken is not None and taken.id == waiting.id  # the lost job is skipped
    failed = await queue.get(lost.id)
    assert failed is not None
    assert (failed.status, failed.finished_at) == ("failed", clock.now())
    assert failed.last_error == "worker lost (lease expired) after 1 attempts"
    assert [r.levelno for r in caplog.records if r.name == "medianest.jobs"] == [logging.ERROR]


async def test_cancel_and_get_are_limited_to_the_owner(db: Database, queue: JobQueue) -> None:
    alice, bob = await make_user(db, "alice"), await make_user(db, "bob")
    job = await queue.enqueue("downloads", "k", {}, user_id=alice)
    assert await queue.get(job.id, user_id=bob) is None
    assert await queue.cancel(job.id, user_id=bob) is False
    assert await queue.list(user_id=bob) == []
    mine = await queue.get(job.id, user_id=alice)
    assert mine is not None and mine.status == "queued"

    assert await queue.cancel(job.id, user_id=alice) is True
    assert await queue.cancel(job.id, user_id=alice) is False  # already finished
    cancelled = await queue.get(job.id)
    assert cancelled is not None and cancelled.status == "cancelled"
    assert cancelled.finished_at is not None
    assert await queue.claim(["downloads"], worker_id="w", lease_seconds=30) is None
    assert await queue.cancel(987654) is False


async def test_cancelled_running_job_loses_its_lease(queue: JobQueue) -> None:
    job = await queue.enqueue("downloads", "k", {})
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    assert await queue.cancel(job.id) is True
    assert await queue.heartbeat(job.id, worker_id="w", lease_seconds=30) is False
    assert await queue.complete(job.id, worker_id="w") is False
    assert await queue.fail(job.id, worker_id="w", error="late") is None
    final = await queue.get(job.id)
    assert final is not None and final.status == "cancelled"


async def test_list_filters_and_pages(db: Database, queue: JobQueue) -> None:
    alice = await make_user(db, "alice")
    ids = [(await queue.enqueue("downloads", "k", {"n": n}, user_id=alice)).id for n in range(5)]
    other = await queue.enqueue("sync", "k", {})
    await queue.cancel(ids[1])

    page = await queue.list(user_id=alice, limit=2)
    assert [job.id for job in page] == [ids[4], ids[3]]
    page = await queue.list(user_id=alice, limit=2, before_id=page[-1].id)
    assert [job.id for job in page] == [ids[2], ids[1]]
    assert [job.id for job in await queue.list(queue="sync")] == [other.id]
    assert [job.id for job in await queue.list(statuses=["cancelled"])] == [ids[1]]
    assert len(await queue.list(statuses=["queued", "cancelled"])) == 6
    with pytest.raises(ValueError, match="unknown job status"):
        await queue.list(statuses=["done"])


async def test_purge_finished_deletes_only_old_finished_jobs(
    queue: JobQueue, clock: ManualClock
) -> None:
    old_done = await queue.enqueue("downloads", "k", {})
    old_cancelled = await queue.enqueue("downloads", "k", {})
    old_queued = await queue.enqueue("downloads", "k", {})
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    await queue.complete(old_done.id, worker_id="w")
    await queue.cancel(old_cancelled.id)
    clock.advance(8 * 86400)
    recent = await queue.enqueue("downloads", "k", {}, priority=1)
    await queue.claim(["downloads"], worker_id="w", lease_seconds=30)
    await queue.complete(recent.id, worker_id="w")

    assert await queue.purge_finished(older_than=timedelta(days=7)) == 2
    assert await queue.get(old_done.id) is None and await queue.get(old_cancelled.id) is None
    assert await queue.get(old_queued.id) is not None and await queue.get(recent.id) is not None


async def test_enqueue_rejects_what_cannot_be_stored(queue: JobQueue) -> None:
    with pytest.raises(ValueError, match="not JSON"):
        await queue.enqueue("downloads", "k", {"when": object()})
    with pytest.raises(ValueError, match="max_attempts"):
        await queue.enqueue("downloads", "k", {}, max_attempts=0)
