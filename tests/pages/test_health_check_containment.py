"""Health checks are contained: one that swallows its cancellation hangs neither the health page
nor shutdown, and the page shows a recent result again instead of waiting on every view."""

from __future__ import annotations

import asyncio
import importlib
import re

import pytest

from medianest_server.healthchecks import PAGE_MAX_AGE_SECONDS, SHUTDOWN_GRACE_SECONDS
from medianest_server.plugins.loader import Candidate

from ..auth.conftest import MakeSite, hidden_csrf
from ..conftest import eventually
from ..sample_plugins import stubborn_health


def sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


async def test_a_health_check_that_swallows_cancellation_hangs_neither_page_nor_shutdown(
    make_site: MakeSite, caplog: pytest.LogCaptureFixture
) -> None:
    stubborn_health.let_go.clear()
    stubborn_health.cancellations.clear()
    try:
        site = await make_site(plugins=[sample("stubborn_health")])
        _, admin = await site.admin()

        async with asyncio.timeout(3.0):  # the check's timeout is 0.2 s
            page = await admin.get("/admin/health")
        assert page.status == 200
        row = re.search(
            r"<strong>stubborn_health</strong> stubborn</td>(.*?)</tr>", await page.text()
        )
        assert row is not None
        assert ">down<" in row.group(1) and "timed out after 0.2 s" in row.group(1)
        await eventually(
            lambda: len(stubborn_health.cancellations) >= 1, what="the check swallowing"
        )

        # "Test connection" runs the checks now: the stuck one is not started twice, it is
        # reported down at once and cancelled again
        csrf = hidden_csrf(await (await admin.get("/admin/plugins")).text())
        async with asyncio.timeout(3.0):
            tested = await admin.post(
                "/admin/plugins/stubborn_health/test",
                data={"csrf_token": csrf},
                headers={"Accept": "application/json"},
            )
        assert tested.status == 200
        await eventually(
            lambda: len(stubborn_health.cancellations) >= 2, what="the second cancellation"
        )
        assert any(
            "swallows cancellation" in r.getMessage()
            for r in caplog.records
            if r.name == "medianest.health"
        )

        async with asyncio.timeout(SHUTDOWN_GRACE_SECONDS + 3.0):
            await site.server.close()
        assert any("left behind" in r.getMessage() for r in caplog.records)
    finally:
        stubborn_health.let_go.set()  # the stuck task may end now, before the loop closes


async def test_health_page_views_within_a_few_seconds_run_a_slow_check_once(
    make_site: MakeSite,
) -> None:
    stubborn_health.let_go.set()  # this test is about the slow check
    stubborn_health.slow_runs.clear()
    site = await make_site(plugins=[sample("stubborn_health")])
    _, admin = await site.admin()

    first = await (await admin.get("/admin/health")).text()
    second = await (await admin.get("/admin/health")).text()
    assert len(stubborn_health.slow_runs) == 1
    assert "run 1" in first and "run 1" in second

    # an explicit test always runs the checks, and the page shows its result after it
    csrf = hidden_csrf(await (await admin.get("/admin/plugins")).text())
    await admin.post("/admin/plugins/stubborn_health/test", data={"csrf_token": csrf})
    assert len(stubborn_health.slow_runs) == 2
    assert "run 2" in await (await admin.get("/admin/health")).text()
    assert len(stubborn_health.slow_runs) == 2

    site.clock.advance(PAGE_MAX_AGE_SECONDS + 1)
    assert "run 3" in await (await admin.get("/admin/health")).text()
