"""Supervised connections: a plugin's WebSocket to its upstream (a tiny aiohttp server on
127.0.0.1) drops and comes back, its state shows to admins, and shutdown closes it.

The app runs on a ManualClock and a sleep the test steps: no test waits out a backoff.
"""

from __future__ import annotations

import asyncio
import importlib
import json
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
from aiohttp import WSMsgType, web
from aiohttp.test_utils import TestClient, TestServer

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.connections import (
    ConnectionLink,
    ConnectionSupervisor,
    LiveConnection,
)
from medianest_server.leader import LeaderElection
from medianest_server.plugins.loader import Candidate
from medianest_server.plugins.runtime import apply_settings

from .conftest import eventually
from .sample_plugins import live_feed
from .stepped_sleep import SteppedSleep

NAME = "live_feed"


class Feed:
    """The upstream: each WebSocket that connects is greeted with `hello <n>` and held open
    until the test drops it."""

    def __init__(self) -> None:
        self.connections = 0
        self.paths: list[str] = []
        self.open: set[web.WebSocketResponse] = set()
        self.app = web.Application()
        self.app.router.add_get("/{path}", self.feed)

    async def feed(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.connections += 1
        self.paths.append(request.path)
        self.open.add(ws)
        try:
            await ws.send_str(f"hello {self.connections}")
            async for message in ws:
                if message.type == WSMsgType.ERROR:
                    break
        finally:
            self.open.discard(ws)
        return ws

    async def drop_all(self) -> None:
        for ws in list(self.open):
            await ws.close()


class Site:
    def __init__(self, client: TestClient, sleep: SteppedSleep, path: Path, url: str) -> None:
        self.client, self.sleep, self.config_path, self.url = client, sleep, path, url
        self.admin: dict[str, str] = {}

    async def connection(self) -> dict[str, Any]:
        response = await self.client.get("/api/v1/admin/diagnostics", headers=self.admin)
        assert response.status == 200
        bundle = json.loads(await response.text())
        found: dict[str, Any] = next(c for c in bundle["connections"] if c["owner"] == NAME)
        return found

    async def state_is(self, state: str) -> dict[str, Any]:
        async def check() -> bool:
            return (await self.connection())["state"] == state

        await eventually(check, what=f"connection {state}")
        return await self.connection()

    async def health_page(self) -> str:
        response = await self.client.get("/admin/health", headers=self.admin)
        assert response.status == 200
        return await response.text()


@pytest.fixture
async def feed(aiohttp_server) -> tuple[Feed, TestServer]:
    upstream = Feed()
    return upstream, await aiohttp_server(upstream.app, host="127.0.0.1")


@pytest.fixture
async def site(
    feed: tuple[Feed, TestServer], write_config: Callable[..., Path], aiohttp_client
) -> AsyncIterator[Site]:
    live_feed.received.clear()
    live_feed.closed.clear()
    url = str(feed[1].make_url("/feed")).replace("http://", "ws://")
    path = write_config()
    path.write_text(path.read_text() + f'\n[plugins.live_feed]\nurl = "{url}"\n')
    clock = ManualClock()
    sleep = SteppedSleep(clock)
    candidate = Candidate(NAME, lambda: importlib.import_module(f"tests.sample_plugins.{NAME}"))
    app = create_app(
        load_config(path, environ={}), plugins=[candidate], environ={}, clock=clock, sleep=sleep
    )
    client = await aiohttp_client(app)
    found = Site(client, sleep, path, url)
    auth = app[AUTH_SERVICES]
    admin = await auth.users.create("boss", password="long enough pw", role="admin")
    token, _ = await auth.api_tokens.create(admin.id, "connections test")
    found.admin = {"Authorization": f"Bearer {token}"}
    yield found
    await client.close()


def _async(condition: Callable[[], bool]) -> Callable[[], Any]:
    async def check() -> bool:
        return condition()

    return check


async def test_a_connection_that_drops_comes_back_and_admins_see_it(
    site: Site, feed: tuple[Feed, TestServer]
) -> None:
    upstream, _ = feed
    state = await site.state_is("connected")
    assert (state["restarts"], state["last_error"], state["retrying_since"]) == (0, None, None)
    await eventually(_async(lambda: live_feed.received == ["hello 1"]), what="first greeting")
    page = await site.health_page()
    assert f'data-connection="{NAME}/feed"' in page
    assert 'data-connection-state="connected"' in page

    await upstream.drop_all()
    state = await site.state_is("retrying")
    assert state["restarts"] == 1
    assert state["last_error"] == "ConnectionError: the feed closed the connection"
    assert state["retrying_since"] is not None and state["next_attempt_at"] is not None
    page = await site.health_page()
    assert 'data-connection-state="retrying"' in page
    assert "ConnectionError: the feed closed the connection" in page
    assert "retrying since" in page

    assert 0.9 <= await site.sleep.step() <= 1.1  # it was up: the shortest wait
    state = await site.state_is("connected")
    assert (state["restarts"], state["retrying_since"]) == (1, None)
    await eventually(_async(lambda: live_feed.received == ["hello 1", "hello 2"]), what="again")
    assert upstream.connections == 2
    assert 'data-connection-state="connected"' in await site.health_page()


async def test_an_upstream_that_stays_down_backs_off_longer_each_time(
    site: Site, feed: tuple[Feed, TestServer]
) -> None:
    upstream, server = feed
    await site.state_is("connected")
    await upstream.drop_all()
    await site.state_is("retrying")
    await server.close()  # the upstream goes away altogether
    waits = [await site.sleep.step() for _ in range(4)]
    # after it was up: 1 s, then refused each time: 2 s, 4 s, 8 s (± 10 %)
    for wait, base in zip(waits, [1, 2, 4, 8], strict=True):
        assert base * 0.9 <= wait <= base * 1.1
    await eventually(_async(lambda: len(site.sleep.waiting()) == 1), what="the next wait")
    state = await site.connection()
    assert state["state"] == "retrying" and state["restarts"] == 5
    assert "ClientConnectorError" in state["last_error"]


async def test_shutdown_closes_the_connection(site: Site, feed: tuple[Feed, TestServer]) -> None:
    upstream, _ = feed
    await site.state_is("connected")
    async with asyncio.timeout(5):
        await site.client.close()
    assert live_feed.closed == [site.url]  # cancelled once, never restarted
    await eventually(_async(lambda: not upstream.open), what="the upstream sees it close")
    names = [task.get_name() for task in asyncio.all_tasks()]
    assert not [name for name in names if name.startswith("connection ")]


async def test_new_settings_restart_the_plugin_and_its_connection(
    site: Site, feed: tuple[Feed, TestServer]
) -> None:
    upstream, _ = feed
    await site.state_is("connected")
    new_url = site.url.replace("/feed", "/other")
    site.config_path.write_text(site.config_path.read_text().replace(site.url, new_url))
    record = await apply_settings(site.client.app, NAME)
    assert record.status == "active"
    assert live_feed.closed == [site.url]  # the old connection was closed first
    state = await site.state_is("connected")
    assert state["restarts"] == 0  # a new connection, not a failure
    await eventually(_async(lambda: upstream.paths == ["/feed", "/other"]), what="reconnect")


class SwitchableLeader(LeaderElection):
    instance_id = "test"

    def __init__(self) -> None:
        self.leading = False

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def is_leader(self) -> bool:
        return self.leading


async def test_a_leader_only_connection_runs_only_while_this_instance_leads() -> None:
    clock = ManualClock()
    sleep = SteppedSleep(clock)
    leader = SwitchableLeader()
    runs: list[str] = []

    async def hold(link: ConnectionLink) -> None:
        runs.append("started")
        link.connected()
        try:
            await asyncio.Event().wait()
        finally:
            runs.append("closed")

    supervisor = ConnectionSupervisor(leader=leader, clock=clock, sleep=sleep)
    supervisor.add(LiveConnection("events", hold, leader_only=True), owner="demo")
    await supervisor.start()
    try:
        await sleep.step()  # another instance leads: it waits and looks again
        assert supervisor.status()[0].state == "standby" and runs == []

        leader.leading = True
        await sleep.step()
        await eventually(_async(lambda: runs == ["started"]), what="it connects once leading")
        assert supervisor.status()[0].state == "connected"

        leader.leading = False
        await sleep.step()  # the leadership check while connected
        await eventually(_async(lambda: runs == ["started", "closed"]), what="closed")
        status = supervisor.status()[0]
        assert (status.state, status.restarts, status.last_error) == ("standby", 0, None)
    finally:
        await supervisor.stop()
    assert supervisor.status()[0].state == "stopped"


async def test_a_connection_that_drops_as_soon_as_it_is_up_keeps_backing_off(
    site: Site, feed: tuple[Feed, TestServer]
) -> None:
    """Up and gone at once, again and again: the waits grow (1, 2, 4 s) instead of a
    reconnect every second forever; once it holds for 30 s, the next loss waits 1 s again."""
    upstream, _ = feed
    waits = []
    for _ in range(3):
        await site.state_is("connected")
        await upstream.drop_all()
        await site.state_is("retrying")
        waits.append(await site.sleep.step())
    for wait, base in zip(waits, [1, 2, 4], strict=True):
        assert base * 0.9 <= wait <= base * 1.1
    await site.state_is("connected")
    site.sleep.clock.advance(31)  # it holds
    await upstream.drop_all()
    await site.state_is("retrying")
    assert 0.9 <= await site.sleep.step() <= 1.1
