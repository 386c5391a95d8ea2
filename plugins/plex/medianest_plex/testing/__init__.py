"""Fake plex.tv and Plex Media Server for tests, this plugin's and anyone else's.

They follow shared/reference/external-apis.md §1 (and the checklist in §6) on the wire: field
names and types, XML unless JSON is asked for, paging, error forms. Both run on 127.0.0.1:

    from medianest_plex.testing import start_fake_plex

    async def test_something(fake_upstream):
        plex = await start_fake_plex(fake_upstream)      # sample library, an owner account
        friend = plex.tv.add_friend("bob", sections=[1])
        settings = {"url": plex.server_url, "token": plex.owner.token, "plex_tv_url": plex.tv_url}
        ...
        await plex.stop_tv()                             # plex.tv down: connection refused

Or build them yourself: `FakePlexServer()` and `FakePlexTv(server=...)`, each with `app()`.

`await sign_in_with_plex(client, plex, clock, account)` signs a MediaNest test client in as a
Plex account the way a browser does (PIN, approval, check), for end-to-end tests that need a
person who signed in with Plex (their own server token, their own libraries).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from medianest_server.plugin_api import Clock, ManualClock

from .library import FakeItem, FakeSection, FakeSession
from .plextv import FakePin, FakePlexTv, PlexAccount, account_json
from .pms import FakePlexServer, Grant, RefreshCall, TranscodeCall
from .wire import RecordedRequest, jpeg, jpeg_size

ServeApp = Callable[[web.Application], Awaitable[TestServer]]


@dataclass
class FakePlex:
    """Both fakes, served; `owner` owns `server` and its token is the server's admin token."""

    tv: FakePlexTv
    server: FakePlexServer
    tv_url: str
    server_url: str
    owner: PlexAccount
    tv_test_server: TestServer
    server_test_server: TestServer

    async def stop_tv(self) -> None:
        """Close plex.tv's socket: calls now fail with "connection refused"."""
        await self.tv_test_server.close()

    async def stop_server(self) -> None:
        """Close the Plex server's socket: calls now fail with "connection refused"."""
        await self.server_test_server.close()


async def start_fake_plex(
    serve: ServeApp, *, clock: Clock | None = None, sample: bool = True, owner: str = "owner"
) -> FakePlex:
    """Serve a fake Plex server (sample library unless `sample=False`) and a fake plex.tv that
    knows it, with an owner account. `serve` starts an app on 127.0.0.1 and returns its
    TestServer: MediaNest's `fake_upstream` fixture does exactly that."""
    server = FakePlexServer(clock=clock, sample=sample)
    server_test_server = await serve(server.app())
    server.base_url = str(server_test_server.make_url("")).rstrip("/")
    tv = FakePlexTv(server=server, clock=clock)
    tv_test_server = await serve(tv.app())
    account = tv.add_owner(owner)
    return FakePlex(
        tv=tv,
        server=server,
        tv_url=str(tv_test_server.make_url("")).rstrip("/"),
        server_url=server.base_url,
        owner=account,
        tv_test_server=tv_test_server,
        server_test_server=server_test_server,
    )


async def sign_in_with_plex(
    client: TestClient[Any, Any], plex: FakePlex, clock: ManualClock, account: PlexAccount
) -> Any:
    """Sign `client` in with Plex as `account` through MediaNest's own pages: start, approve
    the PIN on the fake plex.tv, check. Returns the last response (303 to / when let in)."""
    started = await client.get("/plex/login")
    if started.status != 200:
        raise AssertionError(f"/plex/login answered {started.status}: {await started.text()}")
    pin_id = max(plex.tv.pins)
    plex.tv.approve_pin(pin_id, account)
    clock.advance(3)  # the check asks plex.tv at most once per 2 s per PIN
    return await client.get(f"/plex/login/check?pin={pin_id}", allow_redirects=False)


__all__ = [
    "FakeItem",
    "FakePin",
    "FakePlex",
    "FakePlexServer",
    "FakePlexTv",
    "FakeSection",
    "FakeSession",
    "Grant",
    "PlexAccount",
    "RecordedRequest",
    "RefreshCall",
    "TranscodeCall",
    "account_json",
    "jpeg",
    "jpeg_size",
    "sign_in_with_plex",
    "start_fake_plex",
]
