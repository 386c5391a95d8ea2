"""A plugin's `static/` folder, served at /static/plugins/<name>/ with versioned URLs: what a
page links is served and cached for a year, anything outside the folder or of a plugin that is
not loaded is a 404, and the page security policy lets a browser use it."""

from __future__ import annotations

import hashlib
import importlib
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from yarl import URL

from medianest_server.app import create_app
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import Config, load_config
from medianest_server.plugins.loader import Candidate

DEMO_DIR = Path(__file__).parent / "sample_plugins" / "assets_demo"
STATIC = DEMO_DIR / "static"
LONG_CACHE = "public, max-age=31536000, immutable"


def sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


def version_of(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


async def bearer(app: web.Application, username: str = "viewer") -> dict[str, str]:
    auth = app[AUTH_SERVICES]
    user = await auth.users.create(username, password="long enough pw", role="user")
    token, _ = await auth.api_tokens.create(user.id, "tests")
    return {"Authorization": f"Bearer {token}"}


def app_with(config: Config) -> web.Application:
    return create_app(config, plugins=[sample("assets_demo"), sample("good")], environ={})


@pytest.fixture
async def client(write_config: Any, aiohttp_client: Any) -> TestClient:
    config = load_config(write_config(), environ={})
    return await aiohttp_client(app_with(config))


async def test_a_page_links_its_plugin_css_and_js_with_a_version_and_they_are_served(
    client: TestClient,
) -> None:
    headers = await bearer(client.app)
    page = await client.get("/assets_demo/", headers=headers)
    assert page.status == 200
    html = await page.text()
    css_url = (
        f"/static/plugins/assets_demo/assets_demo.css?v={version_of(STATIC / 'assets_demo.css')}"
    )
    js_url = f"/static/plugins/assets_demo/assets_demo.js?v={version_of(STATIC / 'assets_demo.js')}"
    assert f'<link rel="stylesheet" href="{css_url}">' in html
    assert f'<script type="module" src="{js_url}"></script>' in html
    assert (
        f"/static/plugins/assets_demo/img/dot.png?v={version_of(STATIC / 'img' / 'dot.png')}"
        in html
    )

    # same origin: the page's policy allows them as it is
    policy = page.headers["Content-Security-Policy"]
    assert "script-src 'self'" in policy and "style-src 'self'" in policy

    for url, kind, path in (
        (css_url, "text/css", STATIC / "assets_demo.css"),
        (js_url, "javascript", STATIC / "assets_demo.js"),
    ):
        response = await client.get(url)  # static files need no sign-in
        assert response.status == 200, url
        assert kind in response.headers["Content-Type"]
        assert response.headers["Cache-Control"] == LONG_CACHE
        assert await response.read() == path.read_bytes()


async def test_a_stale_or_missing_version_is_served_but_revalidated(client: TestClient) -> None:
    for url in (
        "/static/plugins/assets_demo/assets_demo.css",
        "/static/plugins/assets_demo/assets_demo.css?v=0123456789abcdef",
    ):
        response = await client.get(url)
        assert response.status == 200
        assert response.headers["Cache-Control"] == "no-cache"  # never no-store, never a year
    head = await client.head("/static/plugins/assets_demo/img/dot.png")
    assert head.status == 200 and head.headers["Content-Type"] == "image/png"


async def test_a_widget_adds_its_plugin_css_to_the_dashboard(client: TestClient) -> None:
    headers = await bearer(client.app)
    html = await (await client.get("/", headers=headers)).text()
    assert "assets-demo-widget" in html, "the widget is on the dashboard"
    href = f"/static/plugins/assets_demo/assets_demo.css?v={version_of(STATIC / 'assets_demo.css')}"
    link = f'<link rel="stylesheet" href="{href}">'
    assert link in html


@pytest.mark.parametrize(
    "path",
    [
        "/static/plugins/nobody/assets_demo.css",  # no such plugin
        "/static/plugins/assets_demo/missing.css",  # no such file
        "/static/plugins/assets_demo/img",  # a folder
        "/static/plugins/good/widget.html",  # a loaded plugin without a static folder
        "/static/plugins/core.pages/medianest.css",  # built-in plugins have none
    ],
)
async def test_unknown_plugins_and_missing_files_are_404(client: TestClient, path: str) -> None:
    response = await client.get(path)
    assert response.status == 404
    assert (
        "Cache-Control" not in response.headers
        or "immutable" not in response.headers["Cache-Control"]
    )


@pytest.mark.parametrize(
    "raw_path",
    [
        "/static/plugins/assets_demo/../__init__.py",
        "/static/plugins/assets_demo/..%2f__init__.py",
        "/static/plugins/assets_demo/%2e%2e/__init__.py",
        "/static/plugins/assets_demo/%2e%2e%2f%2e%2e%2fconftest.py",
        "/static/plugins/assets_demo/img/..%2f..%2f__init__.py",
        "/static/plugins/assets_demo/..%5c__init__.py",
        "/static/plugins/assets_demo/%2fetc%2fpasswd",
        "/static/plugins/assets_demo//etc/passwd",
    ],
)
async def test_paths_cannot_leave_the_plugin_folder(client: TestClient, raw_path: str) -> None:
    response = await client.get(URL(raw_path, encoded=True))
    body = await response.read()
    assert response.status in (400, 404), raw_path
    assert b"hookimpl" not in body and b"root:" not in body


async def test_a_plugin_that_is_not_loaded_is_not_served(
    write_config: Any, aiohttp_client: Any
) -> None:
    config = load_config(write_config(plugins={"disabled": ["assets_demo"]}), environ={})
    client = await aiohttp_client(app_with(config))
    response = await client.get("/static/plugins/assets_demo/assets_demo.css")
    assert response.status == 404
    assert (await client.get("/static/medianest.css")).status == 200  # the core's own still are


async def test_in_chromium_the_page_uses_the_plugin_css_and_js_under_the_policy(
    chromium: Any, write_config: Any, aiohttp_server: Any
) -> None:
    config = load_config(write_config(), environ={})
    server: TestServer = await aiohttp_server(app_with(config))
    headers = await bearer(server.app)
    base = str(server.make_url("")).rstrip("/")
    context = await chromium.new_context(extra_http_headers=headers)
    try:
        page = await context.new_page()
        page.set_default_timeout(10_000)
        problems: list[str] = []
        page.on("console", lambda m: problems.append(m.text) if m.type == "error" else None)
        page.on("pageerror", lambda e: problems.append(str(e)))
        await page.goto(base + "/assets_demo/")
        status = page.locator("[data-assets-demo]")
        await status.filter(has_text="The script ran.").wait_for()
        spacing = await page.locator(".assets-demo-title").evaluate(
            "e => getComputedStyle(e).wordSpacing"
        )
        assert spacing == "7px", "the plugin's stylesheet applies"
        assert problems == []
    finally:
        await context.close()
