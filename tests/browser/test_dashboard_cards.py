"""The admin's dashboard when plugins need attention, in a real Chromium: a plugin that failed
at its settings, one that cannot reach its service yet, and one waiting to be connected, each
a card that says what is wrong; dark and light, 320 and 1280 px, nothing wider than the
screen. Screenshots: test-artifacts/browser/cards/."""

from __future__ import annotations

import importlib
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.plugins.loader import Candidate

from ..sample_plugins import second_edition
from ..stepped_sleep import SteppedSleep
from .test_every_page import PASSWORD

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser" / "cards"


def _sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


@pytest.mark.parametrize(("width", "theme"), [(320, "dark"), (1280, "light")])
async def test_plugins_that_need_attention_are_cards_on_the_admins_dashboard(
    chromium: Any, aiohttp_server: Any, write_config: Any, width: int, theme: str
) -> None:
    second_edition.state.update(upstream_up=False)
    path = write_config()
    path.write_text(
        path.read_text()
        + '\n[plugins.bad_config]\nurl = "not a url"\n'
        + '\n[plugins.second_edition]\nurl = "http://127.0.0.1:9"\n'
    )
    clock = ManualClock(datetime.now(UTC))
    app = create_app(
        load_config(path, environ={}),
        plugins=[_sample("bad_config"), _sample("second_edition"), _sample("hooks_demo")],
        environ={},
        clock=clock,
        sleep=SteppedSleep(clock),
    )
    server = await aiohttp_server(app)
    base = str(server.make_url("")).rstrip("/")
    await app[AUTH_SERVICES].users.create("admin", password=PASSWORD, role="admin")
    context = await chromium.new_context(viewport={"width": width, "height": 900})
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await page.goto(base + "/login")
        await page.get_by_label("Username").fill("admin")
        await page.get_by_label("Password").fill(PASSWORD)
        await page.get_by_role("button", name="Sign in", exact=True).click()
        await page.wait_for_url(base + "/")
        if theme == "light":
            await page.goto(base + "/profile")
            await page.get_by_label("Colours").select_option("light")
            await page.get_by_role("button", name="Save", exact=True).click()
            await page.goto(base + "/")
        await page.get_by_text("Bad Config is not working").wait_for()
        await page.get_by_text("Second Edition cannot reach its service yet").wait_for()
        shots = ARTIFACTS / f"{theme}-{width}"
        shots.mkdir(parents=True, exist_ok=True)
        await page.screenshot(path=str(shots / "dashboard.png"), full_page=True)
        overflow = await page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"the dashboard is {overflow}px wider than {width}px"
    finally:
        await context.close()
