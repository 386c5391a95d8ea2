""" "Not ready yet": a plugin whose upstream comes up after MediaNest starts without a restart.

The sample plugin's startup raises PluginNotReady until the test says its upstream is up; the
app runs on a ManualClock and a sleep the test steps, so no test waits out a backoff.
"""

from __future__ import annotations

import asyncio
import importlib
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from medianest_server.app import create_app
from medianest_server.appkeys import SERVICES
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.plugins.loader import Candidate
from medianest_server.plugins.runtime import apply_settings
from medianest_server.plugins.status_record import recorded_statuses

from .conftest import eventually
from .sample_plugins import late_upstream
from .stepped_sleep import SteppedSleep

NAME = "late_upstream"
NOT_READY = "Late Upstream is not reachable yet"


def sample() -> Candidate:
    path = f"tests.sample_plugins.{NAME}"
    return Candidate(NAME, lambda: importlib.import_module(path), "sample-plugins", "1.0")


class Site:
    def __init__(self, client: TestClient, sleep: SteppedSleep, config_path: Path) -> None:
        self.client = client
        self.sleep = sleep
        self.config_path = config_path
        self.admin: dict[str, str] = {}

    async def plugin(self) -> dict[str, Any]:
        response = await self.client.get("/api/v1/admin/plugins", headers=self.admin)
        assert response.status == 200
        plugins = (await response.json())["plugins"]
        found: dict[str, Any] = next(p for p in plugins if p["name"] == NAME)
        return found

    async def status_is(self, status: str) -> None:
        async def check() -> bool:
            return (await self.plugin())["status"] == status

        await eventually(check, what=f"status {status}")


@pytest.fixture
async def site(write_config: Callable[..., Path], aiohttp_client) -> AsyncIterator[Site]:
    late_upstream.reset()
    path = write_config()
    path.write_text(path.read_text() + '\n[plugins.late_upstream]\nurl = "http://first/"\n')
    clock = ManualClock()
    sleep = SteppedSleep(clock)
    app = create_app(
        load_config(path, environ={}), plugins=[sample()], environ={}, clock=clock, sleep=sleep
    )
    client = await aiohttp_client(app)
    found = Site(client, sleep, path)
    auth = app[AUTH_SERVICES]
    admin = await auth.users.create("boss", password="long enough pw", role="admin")
    token, _ = await auth.api_tokens.create(admin.id, "retry test")
    found.admin = {"Authorization": f"Bearer {token}"}
    yield found
    await client.close()


async def test_a_late_upstream_is_retrying_then_active_without_a_restart(site: Site) -> None:
    client, clock = site.client, site.sleep.clock
    started_at = clock.now()
    plugin = await site.plugin()
    assert (plugin["status"], plugin["stage"], plugin["error"]) == (
        "retrying",
        "startup",
        NOT_READY,
    )
    assert plugin["attempts"] == 1
    next_at = plugin["next_attempt_at"]
    assert next_at is not None
    wait = (datetime.fromisoformat(next_at) - started_at).total_seconds()
    assert 4.5 <= wait <= 5.5  # 5 s ± jitter

    # its routes answer 503 in plain words, for people and admins
    response = await client.get(f"/api/v1/{NAME}/status")
    assert response.status == 503
    assert (await response.json())["error"]["message"] == (
        f"{NOT_READY}; MediaNest keeps trying. Please try again in a few minutes."
    )
    page = await (await client.get("/admin/plugins", headers=site.admin)).text()
    assert 'data-plugin-status="retrying"' in page and NOT_READY in page
    recorded = await recorded_statuses(client.app[SERVICES].db)  # what `medianest plugins` reads
    assert (recorded[NAME].status, recorded[NAME].error) == ("retrying", NOT_READY)
    assert late_upstream.task_runs == []  # not started: nothing collected

    # still down at the next attempt: the wait doubles
    assert 4.5 <= await site.sleep.step() <= 5.5
    await eventually(_async(lambda: len(late_upstream.attempts) == 2), what="second attempt")
    await eventually(_async(lambda: len(site.sleep.waiting()) == 1), what="third wait")
    assert 9.0 <= site.sleep.waiting()[0] <= 11.0
    plugin = await site.plugin()
    assert (plugin["status"], plugin["attempts"]) == ("retrying", 2)

    # the upstream comes up: the plugin starts, its routes answer and its task runs
    late_upstream.upstream_up = True
    await site.sleep.step()
    await site.status_is("active")
    plugin = await site.plugin()
    assert (plugin["error"], plugin["next_attempt_at"], plugin["attempts"]) == (None, None, 0)
    response = await client.get(f"/api/v1/{NAME}/status")
    assert response.status == 200
    assert await response.json() == {"url": "http://first/"}
    await eventually(_async(lambda: late_upstream.task_runs == [0]), what="its task ran")
    recorded = await recorded_statuses(client.app[SERVICES].db)
    assert recorded[NAME].status == "active"
    assert site.sleep.waiting() == []  # no attempt left over

    await client.close()
    assert late_upstream.stopped == ["http://first/"]  # its cleanup ran at shutdown


async def test_new_settings_restart_the_attempts_on_the_new_values(site: Site) -> None:
    await site.sleep.step()
    await eventually(_async(lambda: len(late_upstream.attempts) == 2), what="second attempt")
    assert (await site.plugin())["attempts"] == 2

    text = site.config_path.read_text().replace("http://first/", "http://second/")
    site.config_path.write_text(text)
    record = await apply_settings(site.client.app, NAME)

    assert late_upstream.attempts[-1] == "http://second/"  # tried at once, on the new values
    assert (record.status, record.attempts) == ("retrying", 1)
    await eventually(_async(lambda: len(site.sleep.waiting()) == 1), what="a fresh wait")
    assert 4.5 <= site.sleep.waiting()[0] <= 5.5  # the backoff starts over

    late_upstream.upstream_up = True
    await site.sleep.step()
    await site.status_is("active")
    response = await site.client.get(f"/api/v1/{NAME}/status")
    assert await response.json() == {"url": "http://second/"}


async def test_any_other_failure_after_not_ready_is_final(site: Site) -> None:
    late_upstream.broken = True
    await site.sleep.step()
    await site.status_is("failed")
    plugin = await site.plugin()
    assert plugin["error"] == "RuntimeError: the upstream answered nonsense"
    assert plugin["next_attempt_at"] is None
    await asyncio.sleep(0)
    assert site.sleep.waiting() == []  # nobody tries again
    response = await site.client.get(f"/api/v1/{NAME}/status")
    assert response.status == 503
    assert "is not working right now" in (await response.json())["error"]["message"]


async def test_stopping_the_app_while_retrying_ends_the_attempts(site: Site) -> None:
    await eventually(_async(lambda: len(site.sleep.waiting()) == 1), what="a wait")
    async with asyncio.timeout(5):
        await site.client.close()
    names = [task.get_name() for task in asyncio.all_tasks()]
    assert not [name for name in names if name.startswith("startup retries")]
    assert site.sleep.waiting() == []  # the waiting attempt was cancelled, not left behind
    assert late_upstream.stopped == []  # it never started, so there is nothing to clean up


def _async(condition: Callable[[], bool]) -> Callable[[], Any]:
    async def check() -> bool:
        return condition()

    return check


def test_delay_doubles_from_5_seconds_to_5_minutes() -> None:
    import random

    from medianest_server.plugins.startup_retry import retry_delay

    rng = random.Random(1)
    delays = [retry_delay(attempt, rng) for attempt in range(1, 12)]
    for delay, base in zip(delays, [5, 10, 20, 40, 80, 160], strict=False):
        assert base * 0.9 <= delay <= base * 1.1
    assert all(270 <= d <= 330 for d in delays[6:])  # capped at 5 min, ± 10 %
    assert len({round(d, 6) for d in delays[6:]}) > 1  # jittered: instances spread out
