"""A person's first day with MediaNest, in a real Chromium (Debian's /usr/bin/chromium).

Setup with the code, sign in, the dashboard's widgets, an event published on the server that
updates a widget and the notification badge without a reload, an admin setting changed and
seen, sign out; once at a desktop size and once at a phone's. Screenshots of every step are
kept under test-artifacts/browser/.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import pytest

from medianest_server.app import create_app
from medianest_server.appkeys import SERVICES
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import load_config
from medianest_server.events import make_event
from medianest_server.plugins.loader import Candidate

from ..sample_plugins import good

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser"
VIEWPORTS = {
    "desktop": {"width": 1280, "height": 800},
    "phone": {"width": 320, "height": 640},
}
PASSWORD = "a long admin password"


@pytest.fixture
def browser(chromium: Any) -> Any:
    """Debian's Chromium through Playwright (the `chromium` fixture of medianest's pytest
    plugin)."""
    return chromium


@pytest.mark.parametrize("viewport", list(VIEWPORTS))
async def test_first_day_from_setup_to_sign_out(
    browser: Any, viewport: str, write_config: Any, tmp_path: Path, aiohttp_server: Any
) -> None:
    good.seen_events.clear()
    config = load_config(write_config(), environ={})
    plugin = Candidate("good", lambda: importlib.import_module("tests.sample_plugins.good"))
    app = create_app(config, plugins=[plugin], environ={})
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    shots = ARTIFACTS / viewport
    shots.mkdir(parents=True, exist_ok=True)
    context = await browser.new_context(viewport=VIEWPORTS[viewport])
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        console_errors: list[str] = []
        page.on("console", lambda m: console_errors.append(m.text) if m.type == "error" else None)

        async def shot(step: str) -> None:
            await page.screenshot(path=str(shots / f"{step}.png"), full_page=True)
            overflow = await page.evaluate(
                "document.documentElement.scrollWidth - document.documentElement.clientWidth"
            )
            assert overflow <= 0, (
                f"{step}: the page is {overflow}px wider than the {viewport} screen"
            )

        # 1. setup with the code from the server's log
        await page.goto(base + "/")
        assert page.url.endswith("/setup")
        await shot("1-setup")
        code = await app[AUTH_SERVICES].setup.code()
        await page.get_by_label("Setup code").fill(code)
        await page.get_by_label("Admin username").fill("owner")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Create admin and sign in").click()
        await page.wait_for_url(base + "/")

        # 2. the dashboard shows the plugin's widget
        widget = page.locator('[data-widget="good/greeting"]')
        await widget.get_by_text("Hello owner, 0 events so far.").wait_for()
        await shot("2-dashboard")
        if viewport == "phone":
            bar = await page.locator("nav.sidebar").bounding_box()
            assert bar is not None and bar["y"] + bar["height"] >= VIEWPORTS["phone"]["height"] - 1
        else:
            bar = await page.locator("nav.sidebar").bounding_box()
            assert bar is not None and bar["x"] == 0 and bar["height"] > 300

        # 3. events published on the server update the page without a reload
        await page.wait_for_function("() => document.body.dataset.live === '1'")
        await page.wait_for_timeout(300)  # let EventSource connect before publishing
        services = app[SERVICES]
        owner = await app[AUTH_SERVICES].users.get(1)
        assert owner is not None
        await services.events.publish(make_event("other.thing.happened", {"n": 1}))
        await widget.get_by_text("1 events so far.").wait_for()
        await services.notifications.create(
            user_id=owner.id, type="test", title="Dune is available"
        )
        badge = page.locator("[data-unread-badge]")
        await badge.wait_for(state="visible")
        assert (await badge.inner_text()).strip() == "1"
        await shot("3-live-update")

        # 4. an admin changes a plugin setting and sees the result
        await page.goto(base + "/admin/plugins")
        await page.locator("#good-greeting").fill("welcome")
        await page.get_by_role("button", name="Save good settings").click()
        await page.get_by_text("Saved. Good is connected and running").wait_for()
        await shot("4-settings-saved")
        await page.goto(base + "/")
        await widget.get_by_text("Welcome owner").wait_for()
        await shot("5-setting-applied")

        # 5. sign out
        await page.get_by_role("button", name="Sign out").click()
        await page.wait_for_url(base + "/login")
        await shot("6-signed-out")
        await page.goto(base + "/")
        assert "/login" in page.url

        assert not [e for e in console_errors if "Content Security Policy" in e], console_errors
    finally:
        await context.close()  # an open event stream would hold the server's shutdown
