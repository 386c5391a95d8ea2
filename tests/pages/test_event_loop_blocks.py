"""Plugin code that blocks the event loop is found and named: once per plugin and handler, with
the worst recent lag on the admin health page and in the support bundle."""

from __future__ import annotations

import asyncio
import importlib
import logging
import re
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from medianest_server.plugins.loader import Candidate

from ..auth.conftest import MakeSite
from ..conftest import eventually


def sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


def blocked_warnings(caplog: pytest.LogCaptureFixture, culprit: str) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.name == "medianest.looplag" and r.getMessage().startswith(f"{culprit} blocked")
    ]


async def blocked_times(admin: TestClient, culprit: str) -> int:
    """How often the diagnostics bundle says `culprit` blocked the event loop."""
    bundle: dict[str, Any] = await (await admin.get("/api/v1/admin/diagnostics")).json()
    return sum(b["times"] for b in bundle["event_loop"]["blocked"] if b["call"] == culprit)


async def test_a_route_handler_that_blocks_is_named_once_and_live_answers_right_after(
    make_site: MakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="medianest.looplag")
    site = await make_site(plugins=[sample("blocking")])
    _, admin = await site.admin()
    visitor = await site.browser()
    culprit = "plugin blocking route GET /blocking/"

    for _ in range(2):
        assert (await visitor.get("/blocking/")).status == 200
        async with asyncio.timeout(1.0):  # the loop is free again: liveness answers at once
            assert (await visitor.get("/health/live")).status == 200

    times = 0

    async def counted_twice() -> bool:
        nonlocal times
        times = await blocked_times(admin, culprit)
        return times >= 2

    async with asyncio.timeout(5.0):
        while not await counted_twice():
            await asyncio.sleep(0.01)
    assert times == 2
    warnings = blocked_warnings(caplog, culprit)
    assert len(warnings) == 1, warnings  # once per plugin and handler, not per occurrence
    assert re.fullmatch(
        r"plugin blocking route GET /blocking/ blocked the event loop for 0\.\d s; "
        r"move blocking work to asyncio\.to_thread",
        warnings[0],
    )
    health = await (await admin.get("/admin/health")).text()
    lag = re.search(r'data-loop-lag-ms="([0-9.]+)"', health)
    assert lag is not None and float(lag.group(1)) >= 500
    assert f"{culprit} blocked it 2 times" in health


async def test_a_widget_loader_that_blocks_is_named_not_the_page_that_shows_it(
    make_site: MakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="medianest.looplag")
    site = await make_site(plugins=[sample("blocking")])
    _, alice = await site.user("alice")
    culprit = "plugin blocking widget slow"

    card = await alice.get("/dashboard/widgets/blocking/slow")  # the widget's live refresh
    assert card.status == 200
    assert "loaded at last" in await card.text()

    await eventually(lambda: bool(blocked_warnings(caplog, culprit)), what="the widget named")
    [warning] = blocked_warnings(caplog, culprit)
    assert re.fullmatch(
        rf"{culprit} blocked the event loop for 0\.\d s; move blocking work to asyncio\.to_thread",
        warning,
    )
    # the core route that rendered the card waited on the widget; it did not block
    named = [r.getMessage() for r in caplog.records if r.name == "medianest.looplag"]
    assert not [m for m in named if "core.dashboard" in m], named
