"""Fixtures for the Plex plugin's tests: the fakes served on 127.0.0.1, and clients for them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import pytest
from aiohttp.test_utils import TestServer
from medianest_server.plugin_api import HttpClient, ManualClock
from medianest_server.testing import MediaNestClient

from medianest_plex.client import PlexClientInfo, PlexServerClient, PlexTvClient
from medianest_plex.testing import FakePlex, sign_in_with_plex, start_fake_plex

CLIENT_ID = "5f1c2e3a-0000-4000-8000-abcdefabcdef"


@pytest.fixture
def medianest_plugins() -> list[str]:
    """The app under test loads this plugin alone."""
    return ["plex"]


@pytest.fixture
def medianest_settings(plex: FakePlex) -> dict[str, Any]:
    """Plex configured against the fakes (modules that need more override this)."""
    return {
        "plugins": {
            "plex": {"url": plex.server_url, "token": plex.owner.token, "plex_tv_url": plex.tv_url}
        }
    }


@pytest.fixture
async def plex(aiohttp_server: Any, clock: ManualClock) -> FakePlex:
    """Fake plex.tv and Plex server (sample library, an owner), on the test's clock."""
    return await start_fake_plex(aiohttp_server, clock=clock)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


@pytest.fixture
async def http() -> AsyncIterator[HttpClient]:
    client = HttpClient(retries=1, backoff_seconds=0.01, read_timeout=5, failure_threshold=3)
    await client.start()
    yield client
    await client.close()


@pytest.fixture
def info() -> PlexClientInfo:
    return PlexClientInfo(client_identifier=CLIENT_ID, product="MediaNest Tests")


@pytest.fixture
def plex_tv(http: HttpClient, info: PlexClientInfo, plex: FakePlex) -> PlexTvClient:
    return PlexTvClient(http, info, base_url=plex.tv_url)


@pytest.fixture
def server(http: HttpClient, info: PlexClientInfo, plex: FakePlex) -> PlexServerClient:
    """The Plex server as its owner sees it."""
    return PlexServerClient(http, plex.server_url, token=plex.owner.token, info=info)


@pytest.fixture
def friend(
    medianest_app: TestServer, plex: FakePlex, clock: ManualClock, aiohttp_client: Any
) -> Callable[..., Awaitable[tuple[MediaNestClient, int]]]:
    """`browser, user_id = await friend("bob", sections=[3])`: a Plex friend of the server
    with those libraries shared, signed in to MediaNest with Plex."""

    async def make(name: str, *, sections: list[int]) -> tuple[MediaNestClient, int]:
        account = plex.tv.add_friend(name, sections=sections)
        browser: MediaNestClient = await aiohttp_client(medianest_app)
        assert (await sign_in_with_plex(browser, plex, clock, account)).status == 303
        user_id = int((await (await browser.get("/api/v1/me")).json())["id"])
        return browser, user_id

    return make
