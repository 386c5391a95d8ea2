"""Every page reachable from the menu, in a real Chromium, as an admin and as a plain user, dark
and light, on a 320 px phone and a 1280 px desktop: none is wider than the screen, no image is
broken, nothing is logged to the console as an error. The Plex plugin is active against the
Plex fakes, so the library's poster grids are among the pages; the grid itself is checked too.

Screenshots of every visit land in test-artifacts/browser/pages/<role>-<theme>-<width>/.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.plugins.loader import Candidate

plex_testing = pytest.importorskip("medianest_plex.testing")

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts" / "browser" / "pages"
WIDTHS = {320: 640, 1280: 800}
THEMES = ("dark", "light")
PASSWORD = "a long admin password"
BIG_LIBRARY = 4  # a section of 50 generated films: a full page of posters
EMPTY_LIBRARY = 5

# links followed from these places only: the menu, the user menu, the admin tabs, the profile's
# link to the API docs, and the library's own tiles and first poster of each grid
MENU_LINKS = "nav.sidebar a[href], header.topbar a[href], nav.tabs a[href]"
PAGE_LINKS = (
    "a[href='/api/docs'], .library-tile a[href], .page-head a[href], "
    ".poster-grid .poster:first-child a[href]"
)
NOT_PAGES = re.compile(r"^/(api/v1|logout|plex/login|plex/photo|static)")


@dataclass
class Site:
    base: str
    plex: Any
    clock: ManualClock
    app: Any


async def start_site(aiohttp_server: Any, write_config: Any) -> Site:
    clock = ManualClock(datetime.now(UTC))
    plex = await plex_testing.start_fake_plex(aiohttp_server, clock=clock)
    plex.server.generate_library(BIG_LIBRARY, 50, title="Films")
    plex.server.generate_library(EMPTY_LIBRARY, 0, "show", title="Cartoons")  # an empty library
    settings = {"url": plex.server_url, "token": plex.owner.token, "plex_tv_url": plex.tv_url}
    config = load_config(write_config(plugins={"plex": settings}), environ={})
    candidate = Candidate("plex", lambda: importlib.import_module("medianest_plex"))
    app = create_app(config, plugins=[candidate], environ={}, clock=clock)
    server = await aiohttp_server(app)
    await app[AUTH_SERVICES].users.create("admin", password=PASSWORD, role="admin")
    return Site(str(server.make_url("")).rstrip("/"), plex, clock, app)


@contextlib.asynccontextmanager
async def ticking(clock: ManualClock) -> AsyncIterator[None]:
    """The app's clock moves 1 s per 50 ms while a page polls (Plex sign-in)."""

    async def tick() -> None:
        while True:
            await asyncio.sleep(0.05)
            clock.advance(1)

    task = asyncio.create_task(tick())
    try:
        yield
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sign_in_as_admin(page: Any, site: Site) -> None:
    await page.goto(site.base + "/login")
    await page.get_by_label("Username").fill("admin")
    await page.get_by_label("Password").fill(PASSWORD)
    await page.get_by_role("button", name="Sign in", exact=True).click()
    await page.wait_for_url(site.base + "/")


async def sign_in_as_plex_friend(page: Any, site: Site) -> None:
    """A friend the Plex server is shared with signs in with Plex: a plain user."""
    friend = site.plex.tv.add_friend("bob")
    await page.goto(site.base + "/plex/login")
    site.plex.tv.approve_pin(max(site.plex.tv.pins), friend)
    async with ticking(site.clock):
        await page.wait_for_url(site.base + "/")


async def set_theme(page: Any, site: Site, theme: str) -> None:
    """The theme is the user's preference, saved by the profile page's form."""
    await page.goto(site.base + "/profile")
    await page.get_by_label("Colours").select_option(theme)
    await page.get_by_role("button", name="Save", exact=True).click()
    await page.wait_for_url(site.base + "/profile")
    assert await page.evaluate("document.documentElement.dataset.theme") == theme


def local_path(base: str, href: str) -> str | None:
    parts = urlsplit(href)
    if parts.scheme and not href.startswith(base):
        return None
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    if not path.startswith("/") or NOT_PAGES.match(path):
        return None
    return path


async def links(page: Any, base: str, selector: str) -> list[str]:
    hrefs = await page.eval_on_selector_all(selector, "els => els.map(e => e.href)")
    return [p for p in (local_path(base, h) for h in hrefs) if p]


def worth_a_visit(path: str, found: list[str]) -> bool:
    """Of the library's many pages, those that differ: the films, the shows, the 50-film and
    the empty library, a collection and an empty one, and two items."""
    if path.startswith("/plex/library/"):
        return path in {f"/plex/library/{key}" for key in (1, 2, BIG_LIBRARY, EMPTY_LIBRARY)}
    if path.startswith("/plex/collections/"):
        return path in ("/plex/collections/1", f"/plex/collections/{EMPTY_LIBRARY}")
    if path.startswith("/plex/item/"):
        return sum(p.startswith("/plex/item/") for p in found) < 2
    return True


async def discover(page: Any, site: Site) -> list[str]:
    """The pages reachable from the menu, in the order a person meets them."""
    found: list[str] = []
    queue = ["/"]
    while queue:
        path = queue.pop(0)
        if path in found or not worth_a_visit(path, found):
            continue
        await page.goto(site.base + path)
        landed = local_path(site.base, page.url)  # /admin is /admin/users
        if landed is None or landed in found:
            continue
        found.append(landed)
        queue += await links(page, site.base, MENU_LINKS)
        queue += await links(page, site.base, PAGE_LINKS)
    return [*found, "/search?q=movie", "/plex/search?q=zzz", "/no/such/page"]


# what every visit checks: width, images, and it waits until the lazy posters have loaded
CHECK_PAGE = """async () => {
  for (const image of document.images) image.loading = "eager";
  const deadline = Date.now() + 5000;
  while ([...document.images].some((i) => !i.complete) && Date.now() < deadline) {
    await new Promise((r) => setTimeout(r, 50));
  }
  const root = document.documentElement;
  return {
    overflow: root.scrollWidth - root.clientWidth,
    broken: [...document.images].filter((i) => i.complete && i.naturalWidth === 0)
      .map((i) => i.src),
    unloaded: [...document.images].filter((i) => !i.complete).map((i) => i.src),
  };
}"""


async def visit_everything(browser: Any, site: Site, role: str) -> list[str]:
    problems: list[str] = []
    context = await browser.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        errors: list[str] = []
        page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: errors.append(str(e)))
        if role == "admin":
            await sign_in_as_admin(page, site)
        else:
            await sign_in_as_plex_friend(page, site)
        paths = await discover(page, site)
        assert "/plex/" in paths and f"/plex/library/{BIG_LIBRARY}" in paths, paths
        assert ("/admin/health" in paths) == (role == "admin"), paths
        assert "/api/docs" in paths and "/profile" in paths and "/notifications" in paths
        for theme in THEMES:
            await set_theme(page, site, theme)
            for width, height in WIDTHS.items():
                await page.set_viewport_size({"width": width, "height": height})
                shots = ARTIFACTS / f"{role}-{theme}-{width}"
                shutil.rmtree(shots, ignore_errors=True)
                shots.mkdir(parents=True)
                for path in paths:
                    errors.clear()
                    response = await page.goto(site.base + path)
                    assert response is not None
                    expected = 404 if path == "/no/such/page" else 200
                    if response.status != expected:
                        problems.append(f"{path}: answered {response.status}")
                    where = f"{role}, {theme}, {width}px, {path}"
                    result = await page.evaluate(CHECK_PAGE)
                    name = re.sub(r"[^a-z0-9]+", "-", path.lower()).strip("-") or "dashboard"
                    await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                    if result["overflow"] > 0:
                        problems.append(f"{where}: {result['overflow']}px wider than the screen")
                    if result["broken"] or result["unloaded"]:
                        problems.append(f"{where}: images broken {result['broken']}")
                    page_errors = [e for e in errors if path != "/no/such/page" or "404" not in e]
                    if page_errors:
                        problems.append(f"{where}: console errors {page_errors}")
    finally:
        await context.close()  # an open event stream would hold the server's shutdown
    return problems


async def visit_as_anonymous(browser: Any, site: Site) -> list[str]:
    """Someone not signed in meets the sign-in page and, following an old link, the 404."""
    problems: list[str] = []
    context = await browser.new_context()
    try:
        page = await context.new_page()
        for width, height in WIDTHS.items():
            await page.set_viewport_size({"width": width, "height": height})
            shots = ARTIFACTS / f"anonymous-{width}"
            shutil.rmtree(shots, ignore_errors=True)
            shots.mkdir(parents=True)
            for path, status in (("/login", 200), ("/no/such/page", 404)):
                response = await page.goto(site.base + path)
                assert response is not None and response.status == status, path
                assert await page.locator("nav.sidebar").count() == 0
                result = await page.evaluate(CHECK_PAGE)
                name = path.strip("/").replace("/", "-")
                await page.screenshot(path=str(shots / f"{name}.png"), full_page=True)
                if result["overflow"] > 0 or result["broken"]:
                    problems.append(f"anonymous, {width}px, {path}: {result}")
    finally:
        await context.close()
    return problems


async def test_every_page_fits_phones_and_desktops_in_both_themes(
    chromium: Any, aiohttp_server: Any, write_config: Any
) -> None:
    site = await start_site(aiohttp_server, write_config)
    problems = await visit_everything(chromium, site, "admin")
    problems += await visit_everything(chromium, site, "user")
    problems += await visit_as_anonymous(chromium, site)
    assert not problems, "\n".join(problems)


POSTER_ROWS = """() => {
  const posters = [...document.querySelectorAll('.poster-grid .poster')];
  const top = posters.length ? posters[0].offsetTop : -1;
  return {
    count: posters.length,
    firstRow: posters.filter((p) => p.offsetTop === top).length,
    height: document.documentElement.scrollHeight,
    ratio: posters.length ? posters[0].querySelector('.poster-art').offsetHeight
      / posters[0].querySelector('.poster-art').offsetWidth : 0,
  };
}"""


async def test_the_poster_grid_lays_out_in_columns(
    chromium: Any, aiohttp_server: Any, write_config: Any
) -> None:
    site = await start_site(aiohttp_server, write_config)
    context = await chromium.new_context(viewport={"width": 1280, "height": 800})
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        await sign_in_as_admin(page, site)
        for width, at_least, tallest in ((1280, 5, 4_000), (320, 2, 9_000)):
            await page.set_viewport_size({"width": width, "height": WIDTHS[width]})
            await page.goto(f"{site.base}/plex/library/{BIG_LIBRARY}")
            grid = await page.evaluate(POSTER_ROWS)
            assert grid["count"] == 50
            assert grid["firstRow"] >= at_least, (width, grid)
            assert grid["height"] < tallest, (width, grid)  # it was 12,000 px in one column
            assert abs(grid["ratio"] - 1.5) < 0.02, grid  # 2:3 posters, whatever the image
        # a season in Recently added says which show it belongs to
        await page.goto(site.base + "/plex/")
        newest = page.locator(".poster").first
        assert await newest.locator(".poster-title").inner_text() == "Example Show"
        assert await newest.locator(".poster-subtitle").inner_text() == "Season 2"
    finally:
        await context.close()
