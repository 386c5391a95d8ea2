"""An admin connects Plex after set-up, in a real Chromium: the dashboard's "Connect Plex" card
(typed values, "Test connection" without leaving the page), then "Sign in with Plex" and the
server picker, ending on the dashboard with Plex running. Dark and light, 320 and 1280 px,
nothing wider than the screen. Screenshots: test-artifacts/browser/connect/.
"""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medianest_server.app import create_app
from medianest_server.appkeys import PLUGINS
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.plugins.loader import Candidate

from .test_every_page import PASSWORD, Site, sign_in_as_admin, ticking

plex_testing = pytest.importorskip("medianest_plex.testing")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser" / "connect"


async def unconnected_site(aiohttp_server: Any, write_config: Any) -> Site:
    """MediaNest with the Plex plugin installed but not connected (only plex.tv's address)."""
    clock = ManualClock(datetime.now(UTC))
    plex = await plex_testing.start_fake_plex(aiohttp_server, clock=clock)
    plex.tv.add_owned_server("Cabin", online=False)
    config = load_config(write_config(plugins={"plex": {"plex_tv_url": plex.tv_url}}), environ={})
    candidate = Candidate("plex", lambda: importlib.import_module("medianest_plex"))
    app = create_app(config, plugins=[candidate], environ={}, clock=clock)
    server = await aiohttp_server(app)
    await app[AUTH_SERVICES].users.create("admin", password=PASSWORD, role="admin")
    return Site(str(server.make_url("")).rstrip("/"), plex, clock, app)


async def look(page: Any, name: str, width: int, theme: str) -> None:
    """Screenshot, and the page must fit the screen."""
    shots = ARTIFACTS / f"{theme}-{width}"
    shots.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
    overflow = await page.evaluate(
        "document.documentElement.scrollWidth - document.documentElement.clientWidth"
    )
    assert overflow <= 0, f"{name} is {overflow}px wider than {width}px ({theme})"


@pytest.mark.parametrize(("width", "theme"), [(320, "dark"), (1280, "light")])
async def test_admin_connects_plex_from_the_dashboard(
    chromium: Any, aiohttp_server: Any, write_config: Any, width: int, theme: str
) -> None:
    site = await unconnected_site(aiohttp_server, write_config)
    context = await chromium.new_context(viewport={"width": width, "height": 800})
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        await sign_in_as_admin(page, site)
        if theme == "light":
            await page.goto(site.base + "/profile")
            await page.get_by_label("Colours").select_option("light")
            await page.get_by_role("button", name="Save", exact=True).click()
            await page.goto(site.base + "/")

        card = page.locator("#connect-plex")
        await card.get_by_role("heading", name="Connect Plex").wait_for()
        await look(page, "1-dashboard-connect-card", width, theme)

        # typed by hand: a wrong token first, tested without leaving the page
        await card.get_by_label("Plex server address").fill(site.plex.server_url)
        await card.get_by_label("Server owner's Plex token").fill("not-the-token")
        await card.get_by_role("button", name="Test connection").click()
        result = card.locator("[data-test-result]")
        await result.get_by_text("refused the token").wait_for()
        assert await card.get_by_label("Server owner's Plex token").input_value() == (
            "not-the-token"
        )  # still in the form: the script kept the page
        await look(page, "2-test-connection-refused", width, theme)

        # or the easy way: sign in with Plex and pick the server
        await card.get_by_role("link", name="Sign in with Plex").click()
        await page.wait_for_url(site.base + "/plex/setup")
        await look(page, "3-picker-sign-in", width, theme)

        async def approve(route: Any) -> None:  # plex.tv's auth app, approved at once
            site.plex.tv.approve_pin(max(site.plex.tv.pins), site.plex.owner)
            await route.fulfill(status=200, content_type="text/html", body="<p>Approved</p>")

        await context.route("https://app.plex.tv/**", approve)
        await page.get_by_role("link", name="Sign in with Plex").click()
        await page.get_by_text("Approved").wait_for()
        async with ticking(site.clock):
            await page.goto(site.base + "/plex/setup/check")
            await page.wait_for_url(site.base + "/plex/setup")
        await page.get_by_role("heading", name="Pick your Plex server").wait_for()
        local = page.get_by_label(site.plex.server_url, exact=False)
        assert await local.is_checked()
        await look(page, "4-picker-servers", width, theme)

        await page.get_by_role("button", name="Connect this server").click()
        await page.wait_for_url(site.base + "/?connected=plex")
        await page.get_by_text("Plex is connected.").wait_for()
        assert await page.locator("#connect-plex").count() == 0
        assert site.app[PLUGINS].records["plex"].status == "active"
        await look(page, "5-dashboard-connected", width, theme)

        await page.goto(site.base + "/admin/plugins")
        await look(page, "6-admin-plugins", width, theme)
        assert errors == []
    finally:
        await context.close()
