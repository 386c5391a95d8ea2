"""The plugin contract's second edition, used whole by a third-party plugin through
medianest_server.plugin_api alone (tests/sample_plugins/second_edition): it waits to be
connected, is connected from its card, is not ready until its upstream is, then runs with a
supervised connection, its own stylesheet, a poster from another host through the core's
image proxy, a linked Plex identity, notifications to every admin, and a playlist of jobs
that each run a process group."""

from __future__ import annotations

import asyncio
import importlib
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient

from medianest_server.app import create_app
from medianest_server.appkeys import PLUGINS
from medianest_server.auth.external import link_identity
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.plugin_api import ExternalIdentity
from medianest_server.plugins.loader import Candidate

from .sample_plugins import second_edition
from .stepped_sleep import SteppedSleep

JPEG = b"\xff\xd8\xff\xe0" + b"\x00\x10JFIF" + b"\x00" * 200  # enough of one for the proxy


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_third_party_plugin_uses_every_addition_of_the_second_edition(
    write_config: Callable[..., Path], aiohttp_client: Any, aiohttp_server: Any
) -> None:
    second_edition.state.update(upstream_up=False, connections=0, image_base="")

    async def poster(request: web.Request) -> web.Response:
        return web.Response(body=JPEG, content_type="image/jpeg")

    images = web.Application()
    images.router.add_get("/poster.jpg", poster)
    image_host = await aiohttp_server(images)

    clock = ManualClock(datetime.now(UTC))
    sleep = SteppedSleep(clock)
    candidate = Candidate(
        "second_edition", lambda: importlib.import_module("tests.sample_plugins.second_edition")
    )
    app = create_app(
        load_config(write_config(), environ={}),
        plugins=[candidate],
        environ={},
        clock=clock,
        sleep=sleep,
    )
    client: TestClient = await aiohttp_client(app)
    auth = app[AUTH_SERVICES]
    admin = await auth.users.create("admin", role="admin")
    alice = await auth.users.create("alice", role="user")
    as_admin = _bearer((await auth.api_tokens.create(admin.id, "t"))[0])
    as_alice = _bearer((await auth.api_tokens.create(alice.id, "t"))[0])
    record = app[PLUGINS].records["second_edition"]

    # 1. installed, not connected: its card asks for its setup setting, and tests it
    assert record.status == "not_configured"
    dashboard = await (await client.get("/", headers=as_admin)).text()
    assert "Connect Second Edition" in dashboard and "Service address" in dashboard
    assert 'href="/second_edition/setup"' in dashboard
    tested = await client.post(
        "/dashboard/connect/second_edition/test",
        data={"url": "http://127.0.0.1:9"},
        headers={**as_admin, "Accept": "application/json"},
    )
    assert (await tested.json())["results"][0]["message"].startswith("The service answers")

    # 2. its own way in saves the setting; the upstream is not up yet: retrying, 503
    await client.get("/second_edition/setup", headers=as_admin, allow_redirects=False)
    assert record.status == "retrying" and "not reachable yet" in (record.error or "")
    waiting = await client.get("/api/v1/second_edition/me", headers=as_alice)
    assert waiting.status == 503 and 1 <= int(waiting.headers["Retry-After"]) <= 6
    told = await (await client.get("/", headers=as_admin)).text()
    assert "Second Edition cannot reach its service yet" in told and "next try at" in told

    # 3. the upstream comes up: the retry starts it, no restart; its connection is held
    second_edition.state["upstream_up"] = True
    assert await sleep.step() >= 4.5  # the first retry, 5 s after the first try (jittered)
    async with asyncio.timeout(5):
        while record.status != "active":
            await asyncio.sleep(0.01)
    async with asyncio.timeout(5):
        while second_edition.state["connections"] < 1:
            await asyncio.sleep(0.01)

    # 4. its page links its own stylesheet and a poster from elsewhere, through the proxy
    second_edition.state["image_base"] = str(image_host.make_url("")).rstrip("/")
    page = await (await client.get("/second_edition/", headers=as_alice)).text()
    stylesheet = page.split('href="/static/plugins/second_edition/', 1)[1].split('"', 1)[0]
    css = await client.get(f"/static/plugins/second_edition/{stylesheet}")
    assert css.status == 200 and "second-edition-progress" in await css.text()
    found = re.search(r'<img src="([^"]+)" alt="A poster from elsewhere"', page)
    assert found is not None
    proxied = found.group(1).replace("&amp;", "&")
    assert proxied.startswith("/") and "127.0.0.1" not in proxied.split("?", 1)[0]
    image = await client.get(proxied, headers=as_alice)
    assert image.status == 200 and image.headers["Content-Type"] == "image/jpeg"

    # 5. a linked identity, found by the plugin
    assert (await (await client.get("/api/v1/second_edition/me", headers=as_alice)).json()) == {
        "plex_id": None
    }
    # as the Plex sign-in does when alice presses "Link Plex" on her profile
    await link_identity(auth, alice, ExternalIdentity("plex", "424242", "alice-on-plex"), ip=None)
    me = await (await client.get("/api/v1/second_edition/me", headers=as_alice)).json()
    assert me == {"plex_id": "424242"}

    # 6. notifications to every admin
    told = await client.post("/api/v1/second_edition/alert", headers=as_admin)
    assert (await told.json()) == {"told": 1}
    bell = await (await client.get("/api/v1/notifications", headers=as_admin)).json()
    assert bell["unread"] == 1

    # 7. a playlist: a parent job whose children each run a process group
    playlist = await client.post("/api/v1/second_edition/playlist", headers=as_alice)
    assert (await playlist.json()) == {"status": "succeeded", "progress": 100}
