"""Periodic background tasks: interval and jitter, backoff and its two log lines, timeouts, stop,
run now, and leader-only tasks (skipped when not leading, moving between instances over Redis)."""

from __future__ import annotations

import asyncio
import logging
import random
from datetime import timedelta

import pytest

from medianest_server.clock import ManualClock
from medianest_server.leader import AlwaysLeader, RedisLeader
from medianest_server.tasks import Task, TaskRunner, TaskStatus
from tests.conftest import RedisEnv, eventually


class SteppedSleep:
    """The runner's injected sleep, driven by the test: each call waits until `step()` lets it
    go (moving the ManualClock by the requested seconds), so no test waits in real time."""

    def __init__(self, clock: ManualClock) -> None:
        self.clock = clock
        self._calls: asyncio.Queue[tuple[float, asyncio.Future[None]]] = asyncio.Queue()

    async def __call__(self, seconds: float) -> None:
        done = asyncio.get_running_loop().create_future()
        self._calls.put_nowait((seconds, done))
        await done

    async def step(self) -> float:
        """Wait for the runner's next sleep, end it, and return how long it asked for."""
        async with asyncio.timeout(5):
            seconds, done = await self._calls.get()
        self.clock.advance(seconds)
        done.set_result(None)
        return seconds


class Counter:
    """A task body that counts its runs and raises `errors` first, one per run."""

    def __init__(self, errors: list[Exception] | None = None) -> None:
        self.runs = 0
        self.errors = list(errors or [])

    async def __call__(self) -> None:
        self.runs += 1
        if self.errors:
            raise self.errors.pop(0)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def sleep(clock: ManualClock) -> SteppedSleep:
    return SteppedSleep(clock)


def status_of(runner: TaskRunner, name: str) -> TaskStatus:
    return next(s for s in runner.status() if s.name == name)


async def test_task_runs_at_start_then_every_interval_with_jitter(
    clock: ManualClock, sleep: SteppedSleep
) -> None:
    runner = TaskRunner(leader=AlwaysLeader(), clock=clock, rng=random.Random(7), sleep=sleep)
    body = Counter()
    runner.add(Task("poll", interval_seconds=60, run=body), owner="uptime_kuma")
    await runner.start()
    try:
        delays = [await sleep.step() for _ in range(30)]
        await eventually(lambda: _true(body.runs == 31), what="the 31st run")
        status = status_of(runner, "poll")
    finally:
        await runner.stop()
    assert all(54.0 <= d <= 66.0 for d in delays)
    assert len({round(d, 6) for d in delays}) > 20  # jittered, not one fixed wait
    assert (status.owner, status.runs, status.failures, status.last_error) == (
        "uptime_kuma",
        31,
        0,
        None,
    )
    assert status.last_run_at == status.last_success_at == clock.now()


async def _true(value: bool) -> bool:
    return value


async def test_task_with_run_at_start_false_waits_one_interval_first(
    clock: ManualClock, sleep: SteppedSleep
) -> None:
    runner = TaskRunner(leader=AlwaysLeader(), clock=clock, sleep=sleep)
    body = Counter()
    runner.add(
        Task("retention", interval_seconds=3600, run=body, run_at_start=False, jitter_fraction=0),
        owner="core",
    )
    await runner.start()
    try:
        assert await sleep.step() == 3600
        assert body.runs == 0
        await sleep.step()
        assert body.runs == 1
        status = status_of(runner, "retention")
        # step() ended the wait that was due now: the run at start + 1 h, plus one interval
        assert status.last_run_at == clock.now() - timedelta(seconds=3600)
        assert status.next_run_at == clock.now()
    finally:
        await runner.stop()


async def test_failures_back_off_exponentially_and_log_once_then_recovery_once(
    clock: ManualClock, sleep: SteppedSleep, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="medianest.tasks")
    runner = TaskRunner(leader=AlwaysLeader(), clock=clock, sleep=sleep)
    body = Counter([RuntimeError("upstream down")] * 4)
    task = Task("sync", interval_seconds=10, run=body, jitter_fraction=0, max_backoff_seconds=50)
    runner.add(task, owner="overseerr")
    await runner.start()
    try:
        delays = [await sleep.step() for _ in range(4)]
        failing = status_of(runner, "sync")
        assert (failing.failures, failing.consecutive_failures) == (4, 4)
        assert failing.last_error == "RuntimeError: upstream down"
        assert failing.last_success_at is None
        delays.append(await sleep.step())  # the 5th run succeeded
        recovered = status_of(runner, "sync")
    finally:
        await runner.stop()
    assert delays == [20, 40, 50, 50, 10]
    assert (recovered.runs, recovered.failures, recovered.consecutive_failures) == (5, 4, 0)
    assert recovered.last_error is None and recovered.last_success_at is not None

    records = [r for r in caplog.records if r.name == "medianest.tasks"]
    assert [r.levelno for r in records] == [logging.ERROR, logging.INFO]
    assert "overseerr/sync" in records[0].getMessage()
    assert "upstream down" in records[0].getMessage()
    assert "overseerr/sync recovered" in records[1].getMessage()


async def test_a_run_past_its_timeout_is_cancelled_and_counts_as_a_failure(
    clock: ManualClock, sleep: SteppedSleep
) -> None:
    cancelled = asyncio.Event()

    async def stuck() -> None:
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            cancelled.set()
            raise

    runner = TaskRunner(leader=AlwaysLeader(), clock=clock, sleep=sleep)
    runner.add(
        Task("stuck", interval_seconds=30, run=stuck, timeout_seconds=0.05, jitter_fraction=0),
        owner="plex",
    )
    await runner.start()
    try:
        assert await sleep.step() == 60  # backed off after the timeout
        status = status_of(runner, "stuck")
    finally:
        await runner.stop()
    assert cancelled.is_set()
    assert (status.failures, status.last_error) == (1, "timed out after 0.05 s")


async def test_stop_cancels_a_running_task_and_waits_for_it(clock: ManualClock) -> None:
    started = asyncio.Event()
    cleaned_up = asyncio.Event()

    async def long_sync() -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        finally:
            cleaned_up.set()

    runner = TaskRunner(leader=AlwaysLeader(), clock=clock)
    runner.add(Task("sync", interval_seconds=60, run=long_sync), owner="plex")
    await runner.start()
    async with asyncio.timeout(5):
        await started.wait()
    assert status_of(runner, "sync").running
    await runner.stop()
    assert cleaned_up.is_set()
    status = status_of(runner, "sync")
    assert not status.running and status.failures == 0 and status.next_run_at is None


async def test_one_broken_task_does_not_hold_up_another(clock: ManualClock) -> None:
    healthy, broken = Counter(), Counter([ValueError("bad")] * 1000)
    runner = TaskRunner(leader=AlwaysLeader(), clock=clock)
    runner.add(Task("healthy", interval_seconds=0.01, run=healthy), owner="a")
    runner.add(Task("broken", interval_seconds=0.01, run=broken), owner="b")
    await runner.start()
    try:
        await eventually(lambda: _true(healthy.runs >= 5), what="five healthy runs")
    finally:
        await runner.stop()
    assert status_of(runner, "broken").failures >= 1
    assert status_of(runner, "healthy").failures == 0


async def test_run_now_runs_at_once_and_records_the_outcome(clock: ManualClock) -> None:
    body = Counter([RuntimeError("nope")])
    runner = TaskRunner(leader=AlwaysLeader(), clock=clock)
    runner.add(Task("sync", interval_seconds=3600, run=body), owner="plex")
    await runner.run_now("plex", "sync")  # fails: recorded, not raised
    assert status_of(runner, "sync").last_error == "RuntimeError: nope"
    await runner.run_now("plex", "sync")
    status = status_of(runner, "sync")
    assert (body.runs, status.runs, status.failures, status.last_error) == (2, 2, 1, None)
    with pytest.raises(KeyError):
        await runner.run_now("plex", "missing")
    with pytest.raises(ValueError, match="already has"):
        runner.add(Task("sync", interval_seconds=1, run=body), owner="plex")
    runner.add(Task("sync", interval_seconds=1, run=body), owner="overseerr")  # other owner


async def test_leader_only_task_skips_its_turns_while_not_leading(
    clock: ManualClock, sleep: SteppedSleep, redis_env: RedisEnv
) -> None:
    key = redis_env.prefix + "leader"
    other = RedisLeader(await redis_env.client(), key=key, ttl_seconds=0.6)
    await other.start()
    await eventually(lambda: _true(other.is_leader()), what="the other instance leading")
    ours = RedisLeader(await redis_env.client(), key=key, ttl_seconds=0.6)
    await ours.start()

    body = Counter()
    runner = TaskRunner(leader=ours, clock=clock, sleep=sleep)
    runner.add(
        Task("sync", interval_seconds=30, run=body, leader_only=True, jitter_fraction=0),
        owner="overseerr",
    )
    everywhere = Counter()
    runner.add(Task("cache", interval_seconds=30, run=everywhere, jitter_fraction=0), owner="core")
    await runner.start()
    try:
        for _ in range(6):  # three turns of each task
            assert await sleep.step() == 30
        assert (body.runs, everywhere.runs) == (0, 3)
        status = status_of(runner, "sync")
        assert (status.runs, status.failures, status.leader_only) == (0, 0, True)

        await other.stop()
        await eventually(lambda: _true(ours.is_leader()), what="our instance leading")
        for _ in range(2):  # one turn of each task
            await sleep.step()
        await eventually(lambda: _true(body.runs == 1), what="the leader-only run")
    finally:
        await runner.stop()
        await ours.stop()


async def test_leader_only_task_runs_on_exactly_one_instance_and_moves_when_it_stops(
    redis_env: RedisEnv,
) -> None:
    ttl = 1.5
    key = redis_env.prefix + "leader"
    instances = []
    for name in ("a", "b"):
        leader = RedisLeader(await redis_env.client(), key=key, ttl_seconds=ttl, instance_id=name)
        body = Counter()
        runner = TaskRunner(leader=leader)
        runner.add(Task("sync", interval_seconds=0.02, run=body, leader_only=True), owner="plex")
        instances.append((leader, runner, body))
    for leader, runner, _ in instances:
        await leader.start()
        await runner.start()
    try:
        await eventually(
            lambda: _true(sum(body.runs for *_, body in instances) >= 10), what="ten runs"
        )
        leading = [i for i in instances if i[0].is_leader()]
        assert len(leading) == 1
        first = leading[0]
        second = next(i for i in instances if i is not first)
        assert second[2].runs == 0 and first[2].runs >= 10

        loop = asyncio.get_running_loop()
        stopped_at = loop.time()
        await first[1].stop()
        await first[0].stop()
        await eventually(lambda: _true(second[2].runs > 0), within=ttl, what="takeover")
        assert loop.time() - stopped_at < ttl
        assert second[0].is_leader() and not first[0].is_leader()
        held_by = await (await redis_env.client()).get(key)
        assert held_by == second[0].instance_id.encode()
    finally:
        for leader, runner, _ in instances:
            await runner.stop()
            await leader.stop()
