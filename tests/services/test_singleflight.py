"""SingleFlight: concurrent callers of one key share one call, its result or its exception."""

from __future__ import annotations

import asyncio
import gc

import pytest

from medianest_server.singleflight import SingleFlight


class GatedCall:
    """An upstream call that counts how often it runs and answers once `gate` is set."""

    def __init__(self, result: str = "sections", error: Exception | None = None) -> None:
        self.result = result
        self.error = error
        self.calls = 0
        self.entered = asyncio.Event()
        self.gate = asyncio.Event()
        self.exited = asyncio.Event()

    async def __call__(self) -> str:
        self.calls += 1
        self.entered.set()
        try:
            await self.gate.wait()
            if self.error is not None:
                raise self.error
            return self.result
        finally:
            self.exited.set()


async def test_concurrent_callers_share_one_call_and_the_key_is_then_free() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = GatedCall()
    waiters = [asyncio.create_task(flight.run("plex", call)) for _ in range(50)]
    other_key = asyncio.create_task(flight.run("overseerr", GatedCall("requests")))
    await asyncio.wait_for(call.entered.wait(), 5)
    assert len(flight) == 2
    call.gate.set()

    assert await asyncio.wait_for(asyncio.gather(*waiters), 5) == ["sections"] * 50
    assert call.calls == 1
    assert not other_key.done()  # another key is another call
    other_key.cancel()

    call.gate.set()
    assert await flight.run("plex", call) == "sections"
    assert call.calls == 2


async def test_an_exception_reaches_every_caller() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = GatedCall(error=ConnectionError("Plex is down"))
    waiters = [asyncio.create_task(flight.run("plex", call)) for _ in range(10)]
    await asyncio.wait_for(call.entered.wait(), 5)
    call.gate.set()
    outcomes = await asyncio.wait_for(asyncio.gather(*waiters, return_exceptions=True), 5)
    assert all(isinstance(o, ConnectionError) for o in outcomes)
    assert call.calls == 1
    assert len(flight) == 0


async def test_a_cancelled_caller_does_not_cancel_the_call_for_the_others() -> None:
    flight: SingleFlight[str, str] = SingleFlight()
    call = GatedCall()
    impatient = asyncio.create_task(flight.run("plex", call))
    patient = asyncio.create_task(flight.run("plex", call))
    await asyncio.wait_for(call.entered.wait(), 5)

    impatient.cancel()
    with pytest.raises(asyncio.CancelledError):
        await impatient
    call.gate.set()
    assert await asyncio.wait_for(patient, 5) == "sections"
    assert call.calls == 1


async def test_the_call_runs_on_when_every_caller_went_away() -> None:
    loop = asyncio.get_running_loop()
    reported: list[dict[str, object]] = []
    loop.set_exception_handler(lambda _loop, context: reported.append(context))
    try:
        flight: SingleFlight[str, str] = SingleFlight()
        call = GatedCall(error=ConnectionError("nobody is left to hear this"))
        caller = asyncio.create_task(flight.run("plex", call))
        await asyncio.wait_for(call.entered.wait(), 5)
        caller.cancel()
        with pytest.raises(asyncio.CancelledError):
            await caller
        assert len(flight) == 1  # still running for nobody

        call.gate.set()
        await asyncio.wait_for(call.exited.wait(), 5)
        assert len(flight) == 0
        fresh = GatedCall("fresh")
        fresh.gate.set()
        assert await asyncio.wait_for(flight.run("plex", fresh), 5) == "fresh"
        assert (call.calls, fresh.calls) == (1, 1)
        del caller, call
        gc.collect()
        assert reported == []  # no "exception was never retrieved" for the abandoned call
    finally:
        loop.set_exception_handler(None)
