"""Sign in with Plex in a real Chromium: the popup, the polling page, and the redirect fallback.

app.plex.tv is answered by the browser context's route (nothing leaves the machine); the PIN is
approved on the fake plex.tv as the owner would in that window. The test clock moves while the
page polls, since the check endpoint asks plex.tv at most once per 2 s of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp.test_utils import TestServer
from medianest_server.plugin_api import ManualClock

from medianest_plex.testing import FakePlex

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "browser" / "plex"
PLEX_AUTH_PAGE = "<!doctype html><title>Plex</title><p>Allow MediaNest to use your account?</p>"


@pytest.fixture
def medianest_plugins() -> list[str]:
    return ["plex"]


@pytest.fixture
def medianest_settings(plex: FakePlex) -> dict[str, Any]:
    return {
        "plugins": {
            "plex": {"url": plex.server_url, "token": plex.owner.token, "plex_tv_url": plex.tv_url}
        }
    }


@pytest.fixture
async def ticking(clock: ManualClock) -> AsyncIterator[None]:
    """The app's clock moves 1 s per 50 ms while the browser polls."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.05)
            clock.advance(1)

    task = asyncio.create_task(tick())
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _context(chromium: Any, *, block_popups: bool = False) -> Any:
    context = await chromium.new_context(viewport={"width": 1024, "height": 768})

    async def plex_app(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=PLEX_AUTH_PAGE)

    await context.route("https://app.plex.tv/**", plex_app)
    if block_popups:
        await context.add_init_script("window.open = () => null;")
    return context


async def test_sign_in_with_plex_in_a_popup_from_the_sign_in_page(
    chromium: Any,
    medianest_app: TestServer,
    admin_client: Any,  # someone set MediaNest up already: /login is the sign-in page
    plex: FakePlex,
    ticking: None,
) -> None:
    base = str(medianest_app.make_url("")).rstrip("/")
    context = await _context(chromium)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(base + "/login")
        async with page.expect_popup() as popup_info:
            await page.get_by_role("link", name="Sign in with Plex").click()
        popup = await popup_info.value
        await popup.wait_for_url("https://app.plex.tv/**")
        assert "forwardUrl" not in popup.url
        status = page.locator("[data-poll-status]")
        await status.get_by_text("Waiting for you to sign in").wait_for()
        await page.screenshot(path=str(ARTIFACTS / "1-waiting-on-sign-in-page.png"))
        assert page.url == base + "/login"  # the page stayed, and polls

        plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
        await page.wait_for_url(base + "/")
        await page.get_by_text(plex.owner.username).first.wait_for()
        await page.screenshot(path=str(ARTIFACTS / "2-signed-in.png"))
        assert popup.is_closed()  # the page closed Plex's window when it was done
    finally:
        await context.close()


async def test_the_waiting_pages_button_opens_plex_in_a_popup(
    chromium: Any, medianest_app: TestServer, plex: FakePlex, ticking: None
) -> None:
    """/plex/login opened directly (a bookmark, no JavaScript on the sign-in page)."""
    base = str(medianest_app.make_url("")).rstrip("/")
    context = await _context(chromium)
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(base + "/plex/login")
        async with page.expect_popup() as popup_info:
            await page.get_by_role("link", name="Open Plex to sign in").click()
        popup = await popup_info.value
        await popup.wait_for_load_state()
        assert popup.url.startswith("https://app.plex.tv/auth#?")
        assert "forwardUrl" not in popup.url
        assert page.url == base + "/plex/login"
        plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
        await page.wait_for_url(base + "/")
        assert popup.is_closed()
    finally:
        await context.close()


async def test_with_popups_blocked_the_sign_in_page_goes_to_plex_and_comes_back(
    chromium: Any,
    medianest_app: TestServer,
    admin_client: Any,
    plex: FakePlex,
    ticking: None,
) -> None:
    base = str(medianest_app.make_url("")).rstrip("/")
    context = await _context(chromium, block_popups=True)
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(base + "/login")
        await page.get_by_role("link", name="Sign in with Plex").click()
        await page.wait_for_url("https://app.plex.tv/**")
        fragment = page.url.split("#?", 1)[1]
        forward = parse_qs(fragment)["forwardUrl"][0]
        assert forward.startswith(base + "/plex/login/check?pin=")

        plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
        await page.goto(forward)  # what Plex does once the person allows MediaNest
        await page.wait_for_url(base + "/")
        await page.get_by_text(plex.owner.username).first.wait_for()
    finally:
        await context.close()


async def test_an_expired_pin_is_explained_on_the_waiting_page(
    chromium: Any, medianest_app: TestServer, plex: FakePlex, ticking: None
) -> None:
    base = str(medianest_app.make_url("")).rstrip("/")
    context = await _context(chromium)
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(base + "/plex/login")
        plex.tv.expire_pin(max(plex.tv.pins))
        status = page.locator("[data-poll-status]")
        await status.get_by_text("The Plex sign-in expired").wait_for()
        await page.get_by_role("link", name="Try again").wait_for()
        assert page.url == base + "/plex/login"
    finally:
        await context.close()
