"""Sign in with Plex in a real Chromium: the popup, the polling page, and the redirect fallback.

app.plex.tv is answered by the browser context's route (nothing leaves the machine); the PIN is
approved on the fake plex.tv as the owner would in that window. The test clock moves while the
page polls, since the check endpoint asks plex.tv at most once per 2 s of it.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
from aiohttp.test_utils import TestServer
from medianest_server.plugin_api import ManualClock
from medianest_server.web.realtime import open_connections
from medianest_server.web.webhooks import webhook_secret  # no public way to learn it yet

from medianest_plex.testing import FakePlex
from medianest_plex.testing.webhooks import plex_webhook

ARTIFACTS = Path(__file__).resolve().parents[3] / "test-artifacts" / "browser" / "plex"
PLEX_AUTH_PAGE = "<!doctype html><title>Plex</title><p>Allow MediaNest to use your account?</p>"


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


OpenPage = Callable[..., Awaitable[Any]]


@pytest.fixture
def base(medianest_app: TestServer) -> str:
    return str(medianest_app.make_url("")).rstrip("/")


@pytest.fixture
async def open_page(chromium: Any, base: str) -> AsyncIterator[OpenPage]:
    """`page = await open_page("/login", block_popups=False)`: a fresh browser context (its own
    cookies) on the app, app.plex.tv answered locally; every context closes after the test."""
    contexts: list[Any] = []

    async def plex_app(route: Any) -> None:
        await route.fulfill(status=200, content_type="text/html", body=PLEX_AUTH_PAGE)

    async def open_at(path: str, *, block_popups: bool = False) -> Any:
        context = await chromium.new_context(viewport={"width": 1024, "height": 768})
        contexts.append(context)
        await context.route("https://app.plex.tv/**", plex_app)
        if block_popups:
            await context.add_init_script("window.open = () => null;")
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(base + path)
        return page

    yield open_at
    for context in contexts:
        await context.close()


async def open_plex_popup(page: Any, link: str) -> Any:
    """Click `link` and return the popup once it shows Plex (without a forwardUrl: the popup
    only approves; the page itself signs in)."""
    async with page.expect_popup() as popup_info:
        await page.get_by_role("link", name=link).click()
    popup = await popup_info.value
    await popup.wait_for_url("https://app.plex.tv/**")
    assert "forwardUrl" not in popup.url
    return popup


async def test_sign_in_with_plex_in_a_popup_from_the_sign_in_page(
    open_page: OpenPage,
    base: str,
    admin_client: Any,  # someone set MediaNest up already: /login is the sign-in page
    plex: FakePlex,
    ticking: None,
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page = await open_page("/login")
    popup = await open_plex_popup(page, "Sign in with Plex")
    status = page.locator("[data-poll-status]")
    await status.get_by_text("Waiting for you to sign in").wait_for()
    await page.screenshot(path=str(ARTIFACTS / "1-waiting-on-sign-in-page.png"))
    assert page.url == base + "/login"  # the page stayed, and polls

    plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
    await page.wait_for_url(base + "/")
    await page.get_by_text(plex.owner.username).first.wait_for()
    await page.screenshot(path=str(ARTIFACTS / "2-signed-in.png"))
    assert popup.is_closed()  # the page closed Plex's window when it was done


async def test_the_waiting_pages_button_opens_plex_in_a_popup(
    open_page: OpenPage, base: str, plex: FakePlex, ticking: None
) -> None:
    """/plex/login opened directly (a bookmark, no JavaScript on the sign-in page)."""
    page = await open_page("/plex/login")
    popup = await open_plex_popup(page, "Open Plex to sign in")
    assert page.url == base + "/plex/login"
    plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
    await page.wait_for_url(base + "/")
    assert popup.is_closed()


async def test_with_popups_blocked_the_sign_in_page_goes_to_plex_and_comes_back(
    open_page: OpenPage,
    base: str,
    admin_client: Any,
    plex: FakePlex,
    ticking: None,
) -> None:
    page = await open_page("/login", block_popups=True)
    await page.get_by_role("link", name="Sign in with Plex").click()
    await page.wait_for_url("https://app.plex.tv/**")
    fragment = page.url.split("#?", 1)[1]
    forward = parse_qs(fragment)["forwardUrl"][0]
    assert forward.startswith(base + "/plex/login/check?pin=")

    plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
    await page.goto(forward)  # what Plex does once the person allows MediaNest
    await page.wait_for_url(base + "/")
    await page.get_by_text(plex.owner.username).first.wait_for()


async def test_an_expired_pin_is_explained_on_the_waiting_page(
    open_page: OpenPage, base: str, plex: FakePlex, ticking: None
) -> None:
    page = await open_page("/plex/login")
    plex.tv.expire_pin(max(plex.tv.pins))
    status = page.locator("[data-poll-status]")
    await status.get_by_text("The Plex sign-in expired").wait_for()
    await page.get_by_role("link", name="Try again").wait_for()
    assert page.url == base + "/plex/login"


async def test_a_second_attempt_after_closing_the_popup_signs_in(
    open_page: OpenPage, base: str, admin_client: Any, plex: FakePlex, ticking: None
) -> None:
    """The first attempt's polling retires when the second starts: it neither closes the new
    popup nor spoils the new PIN."""
    page = await open_page("/login")
    first = await open_plex_popup(page, "Sign in with Plex")
    await first.close()  # changed their mind, or closed it by accident
    second = await open_plex_popup(page, "Sign in with Plex")
    await asyncio.sleep(1.0)  # several polls of both attempts' era
    assert not second.is_closed()
    plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
    await page.wait_for_url(base + "/")
    assert second.is_closed()


@pytest.mark.parametrize("width", [1280, 320])
async def test_the_library_pages_fit_the_screen_in_the_site_layout(
    open_page: OpenPage, base: str, plex: FakePlex, ticking: None, width: int
) -> None:
    """Signed in with Plex, the library, a library, an item and search sit in the site's
    layout (menu, bell) and are no wider than a desktop or a 320 px phone."""
    page = await open_page("/plex/login")
    await page.set_viewport_size({"width": width, "height": 800})
    plex.tv.approve_pin(max(plex.tv.pins), plex.owner)
    await page.wait_for_url(base + "/")
    shots = ARTIFACTS / f"library-{width}"
    shots.mkdir(parents=True, exist_ok=True)
    first_item = plex.server.sections[1].items[0].rating_key
    for name, path in {
        "index": "/plex/",
        "browse": "/plex/library/1",
        "item": f"/plex/item/{first_item}",
        "search": "/plex/search?q=the",
        "collections": "/plex/collections/1",
    }.items():
        response = await page.goto(base + path)
        assert response is not None and response.status == 200, (name, response)
        assert await page.locator("[data-unread-badge]").count() == 1, name
        await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} is {overflow}px wider than {width}px"


async def test_a_real_shaped_library_new_webhook_updates_recently_added_live(
    open_page: OpenPage,
    base: str,
    plex: FakePlex,
    ticking: None,
    medianest_app: TestServer,
    aiohttp_client: Any,
) -> None:
    """A friend's dashboard is open; Plex adds a film to a library shared with them and sends
    `library.new` as Plex does (typed JSON part and thumbnail): the "Recently added" card
    shows it without a reload."""
    bob = plex.tv.add_friend("bob", sections=[1])
    page = await open_page("/plex/login")
    plex.tv.approve_pin(max(plex.tv.pins), bob)
    await page.wait_for_url(base + "/")
    recent = page.locator('[data-widget="plex/recent"]')
    await recent.wait_for()
    assert "Live Arrival" not in await recent.inner_text()
    await page.evaluate("window.notReloaded = true")
    async with asyncio.timeout(10):  # the page's event stream is open before Plex speaks
        while open_connections(medianest_app.app) == 0:
            await asyncio.sleep(0.02)

    item = plex.server.add_item(1, "Live Arrival", "/data/movies/Live Arrival.mkv")
    form = plex_webhook(plex.server, "library.new", account=plex.owner, item=item)
    secret = webhook_secret(medianest_app.app, "plex", "events")
    sender = await aiohttp_client(medianest_app)
    sent = await sender.post(f"/api/v1/webhooks/plex/events/{secret}", data=form)
    assert sent.status == 200 and (await sent.json())["handled"] is True

    await page.locator('[data-widget="plex/recent"]').get_by_text("Live Arrival").wait_for()
    assert await page.evaluate("window.notReloaded === true")
