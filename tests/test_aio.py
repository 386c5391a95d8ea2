"""cancel_and_wait: stopping background tasks without hanging on one that ignores its cancel."""

from __future__ import annotations

import asyncio
import contextlib

import pytest

from medianest_server.aio import cancel_and_wait


async def test_cancelled_tasks_end_and_finished_ones_are_left_alone() -> None:
    sleeper = asyncio.create_task(asyncio.sleep(60))
    done = asyncio.create_task(asyncio.sleep(0))
    await done
    assert await cancel_and_wait([sleeper, done], within=1.0) is True
    assert sleeper.cancelled() and not done.cancelled()


async def test_a_task_that_swallows_its_cancel_is_given_up_on_not_waited_for_forever(
    caplog: pytest.LogCaptureFixture,
) -> None:
    stop = asyncio.Event()

    async def stubborn() -> None:
        while not stop.is_set():
            with contextlib.suppress(asyncio.CancelledError):  # as some client libraries do
                await asyncio.sleep(0.01)

    task = asyncio.create_task(stubborn())
    await asyncio.sleep(0)
    loop = asyncio.get_running_loop()
    started = loop.time()
    assert await cancel_and_wait([task], within=0.2) is False
    assert loop.time() - started < 1.0
    assert "did not stop" in caplog.text
    stop.set()
    await task


async def test_the_callers_own_cancellation_is_not_swallowed() -> None:
    stubborn = asyncio.create_task(_ignore_cancel())
    await asyncio.sleep(0)  # running, so it can ignore its cancel

    outer = asyncio.create_task(cancel_and_wait([stubborn], within=30.0))
    await asyncio.sleep(0.05)
    assert not outer.done()
    outer.cancel()  # the caller is told to stop while it waits
    with pytest.raises(asyncio.CancelledError):
        await outer
    await stubborn


async def _ignore_cancel() -> None:
    for _ in range(100):
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.sleep(0.01)
