"""Every route declares its access, and the app enforces it: proven by walking the router."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from medianest_server.app import create_app
from medianest_server.appkeys import SERVICES
from medianest_server.auth.services import AUTH_SERVICES
from medianest_server.config import Config
from medianest_server.plugins.loader import Candidate
from medianest_server.web.access import ROUTE_TABLE
from medianest_server.web.webhooks import webhook_secret

from .sample_plugins import hooks_demo


def sample(name: str) -> Candidate:
    return Candidate(name, lambda: importlib.import_module(f"tests.sample_plugins.{name}"))


PLUGINS = [sample("good"), sample("hooks_demo")]


@pytest.fixture
async def server(app_config: Config, aiohttp_server) -> TestServer:
    return await aiohttp_server(create_app(app_config, plugins=PLUGINS, environ={}))


async def bearer_for(app: web.Application, username: str, role: str) -> tuple[int, str]:
    auth = app[AUTH_SERVICES]
    user = await auth.users.create(username, password="long enough pw", role=role)  # type: ignore[arg-type]
    raw, _ = await auth.api_tokens.create(user.id, "walk")
    return user.id, raw


def concrete(path: str) -> str:
    """A request path for a route pattern: every {param} becomes an id nobody has, so an
    admin walking DELETE routes changes nothing."""
    return re.sub(r"\{[^}]+\}", "999999", path)


def test_every_route_on_the_app_declares_its_access(app_config: Config) -> None:
    app = create_app(app_config, plugins=PLUGINS, environ={})
    table = app[ROUTE_TABLE]
    undeclared = [
        f"{route.method} {route.resource.canonical if route.resource else '?'}"
        for route in app.router.routes()
        if route not in table and not isinstance(route.resource, web.StaticResource)
    ]
    assert undeclared == []
    assert {info.access for info in table.values()} == {"public", "user", "admin"}


async def test_walk_the_router_anonymous_user_and_admin(server: TestServer, aiohttp_client) -> None:
    app = server.app
    _, user_token = await bearer_for(app, "walker", "user")
    _, admin_token = await bearer_for(app, "boss", "admin")
    anonymous: TestClient = await aiohttp_client(server)
    checked = 0
    for info in app[ROUTE_TABLE].values():
        if info.access == "public" or info.method == "HEAD":
            continue
        path = concrete(info.path)
        response = await anonymous.request(info.method, path, allow_redirects=False)
        if info.kind == "api":
            assert response.status == 401, f"{info.method} {path} answered {response.status}"
        else:
            assert response.status == 302, f"{info.method} {path} answered {response.status}"
            assert response.headers["Location"].startswith("/login?next=")
        if info.access == "admin":
            as_user = await anonymous.request(
                info.method,
                path,
                headers={"Authorization": f"Bearer {user_token}"},
                allow_redirects=False,
            )
            assert as_user.status == 403, f"{info.method} {path} let a user in"
            as_admin = await anonymous.request(
                info.method,
                path,
                headers={"Authorization": f"Bearer {admin_token}"},
                allow_redirects=False,
            )
            assert as_admin.status not in (401, 403), f"{info.method} {path} refused an admin"
        checked += 1
    assert checked >= 15


async def test_webhook_needs_its_secret_in_the_path_or_header(
    server: TestServer, aiohttp_client
) -> None:
    hooks_demo.received.clear()
    client: TestClient = await aiohttp_client(server)
    secret = webhook_secret(server.app, "hooks_demo", "ping")
    events = server.app[SERVICES].events.subscribe(types=["hooks_demo.ping.received"])
    ok = await client.post(f"/api/v1/webhooks/hooks_demo/ping/{secret}", json={"n": 1})
    assert ok.status == 200
    header = await client.post(
        "/api/v1/webhooks/hooks_demo/ping", json={"n": 2}, headers={"X-Demo-Secret": secret}
    )
    assert header.status == 200
    wrong = await client.post("/api/v1/webhooks/hooks_demo/ping/not-the-secret", json={"n": 3})
    assert wrong.status == 401
    missing = await client.post("/api/v1/webhooks/hooks_demo/ping", json={"n": 4})
    assert missing.status == 401
    assert hooks_demo.received == [{"n": 1}, {"n": 2}]
    first = await events.get(timeout=5)
    assert first is not None and first.data == {"count": 1}
    events.close()


async def test_login_page_lists_providers_from_the_hook(server: TestServer, aiohttp_client) -> None:
    await bearer_for(server.app, "someone", "admin")  # setup done: /login no longer redirects
    client: TestClient = await aiohttp_client(server)
    page = await (await client.get("/login")).text()
    assert 'href="/hooks_demo/start"' in page and "Sign in with Demo" in page


async def test_deleting_a_user_reaches_plugins_and_cascades_their_rows(
    server: TestServer, aiohttp_client
) -> None:
    hooks_demo.removed.clear()
    app = server.app
    _, admin_token = await bearer_for(app, "boss", "admin")
    victim_id, _ = await bearer_for(app, "leaving", "user")
    db = app[SERVICES].db
    await db.execute(
        "INSERT INTO good_greetings (id, user_id, text) VALUES (1, :uid, 'hi')", {"uid": victim_id}
    )
    data_dir = Path(app[SERVICES].config.data_dir) / "plugins" / "hooks_demo"
    (data_dir / f"user-{victim_id}.txt").write_text("theirs")
    client: TestClient = await aiohttp_client(server)
    response = await client.delete(
        f"/api/v1/admin/users/{victim_id}", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status == 200
    assert hooks_demo.removed == [victim_id]
    assert not (data_dir / f"user-{victim_id}.txt").exists()
    for table in ("good_greetings", "api_tokens", "sessions", "notifications"):
        count = await db.fetch_val(
            f"SELECT count(*) FROM {table} WHERE user_id = :uid", {"uid": victim_id}
        )
        assert count == 0, table


async def test_support_bundle_has_plugin_diagnostics_without_secrets(
    app_config: Config, aiohttp_client
) -> None:
    from dataclasses import replace

    config = replace(
        app_config,
        plugins=replace(
            app_config.plugins,
            settings={"good": {"greeting": "hey", "api_key": "bundle-secret-4242"}},
        ),
    )
    app = create_app(config, plugins=PLUGINS, environ={})
    client = await aiohttp_client(app)
    _, admin_token = await bearer_for(app, "boss", "admin")
    response = await client.get(
        "/api/v1/admin/diagnostics", headers={"Authorization": f"Bearer {admin_token}"}
    )
    assert response.status == 200
    text = await response.text()
    assert "bundle-secret-4242" not in text
    bundle = __import__("json").loads(text)
    assert bundle["diagnostics"]["good"] == {"greeting": "hey"}
    assert any(p["name"] == "hooks_demo" for p in bundle["plugins"])


async def test_a_login_provider_signs_people_in_and_links_them_once(
    server: TestServer, aiohttp_client
) -> None:
    auth = server.app[AUTH_SERVICES]
    first = await aiohttp_client(server)
    landed = await first.get(
        "/hooks_demo/start",
        params={"subject": "42", "name": "zed", "owner": "1"},
        allow_redirects=False,
    )
    assert landed.status == 303 and "medianest_session" in landed.cookies
    me = await (await first.get("/api/v1/me")).json()
    assert (me["username"], me["role"], me["display_name"]) == ("zed", "admin", "Zed")
    assert (await (await first.get("/api/v1/hooks_demo/my-secret")).json()) == {"has": True}
    stored = await server.app[SERVICES].db.fetch_val(
        "SELECT secret FROM identities WHERE subject = '42'"
    )
    assert stored and "upstream-token-42" not in stored  # encrypted at rest

    again = await aiohttp_client(server)
    await again.get(
        "/hooks_demo/start", params={"subject": "42", "name": "zed", "avatar": "/a.png"}
    )
    me_again = await (await again.get("/api/v1/me")).json()
    assert me_again["id"] == me["id"] and me_again["avatar_url"] == "/a.png"
    assert await auth.users.count() == 1

    other = await aiohttp_client(server)
    await other.get("/hooks_demo/start", params={"subject": "7", "name": "zed"})
    assert (await (await other.get("/api/v1/me")).json())["username"] == "zed-2"
