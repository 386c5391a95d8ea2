"""Roles: what users may not do, what admins may, and the rules that keep an admin around."""

from __future__ import annotations

import asyncio
import importlib
import re
from typing import Any

from aiohttp.test_utils import TestClient

from medianest_server.appkeys import SERVICES
from medianest_server.plugins.loader import Candidate
from medianest_server.web.access import ROUTE_TABLE

from . import removal_barrier
from .conftest import USER_PASSWORD, MakeSite, Site, bearer, csrf_of, me_status


def _concrete(path: str) -> str:
    """A path with its placeholders filled: numbers for [0-9]+ ids, a word otherwise."""
    path = re.sub(r"\{[^}:]+:(\\d|\[0-9\])\+\}", "1", path)
    return re.sub(r"\{[^}]+\}", "x", path)


async def _api_token(site: Site, username: str, role: str = "user") -> tuple[Any, str]:
    """A user without a password (no hashing) and a personal API token for them."""
    user = await site.auth.users.create(username, role=role)  # type: ignore[arg-type]
    raw, _ = await site.auth.api_tokens.create(user.id, "test")
    return user, raw


async def test_every_route_refuses_anonymous_callers(site: Site) -> None:
    client = await site.browser()
    checked = 0
    for info in site.app[ROUTE_TABLE].values():
        if info.access == "public" or info.method == "HEAD":
            continue
        response = await client.request(
            info.method, _concrete(info.path), allow_redirects=False, json={}
        )
        if info.kind == "api":
            assert response.status == 401, (info.method, info.path, response.status)
        else:
            assert response.status == 302, (info.method, info.path, response.status)
            assert response.headers["Location"].startswith("/login?next=")
        checked += 1
    assert checked >= 15


async def test_users_get_403_on_every_admin_route(site: Site) -> None:
    _, raw = await _api_token(site, "alice")
    client = await site.browser()
    admin_routes = [
        info
        for info in site.app[ROUTE_TABLE].values()
        if info.access == "admin" and info.method != "HEAD"
    ]
    assert {"/api/v1/admin/users", "/api/v1/admin/audit"} <= {i.path for i in admin_routes}
    for info in admin_routes:
        response = await client.request(
            info.method, _concrete(info.path), headers=bearer(raw), json={}
        )
        assert response.status == 403, (info.method, info.path, response.status)
    # the same through a signed-in browser that sends its CSRF token
    await site.create_user("bob")
    browser = await site.sign_in("bob", USER_PASSWORD)
    csrf = {"X-CSRF-Token": await csrf_of(browser)}
    for info in admin_routes:
        response = await browser.request(
            info.method, _concrete(info.path), headers=csrf, json={}, allow_redirects=False
        )
        assert response.status == 403, (info.method, info.path, response.status)
    assert await site.count("users") == 2


async def test_admin_lists_searches_and_pages_through_users(site: Site) -> None:
    _, raw = await _api_token(site, "admin", role="admin")
    for name in ("alice", "albert", "bob", "carol", "alfred"):
        await site.auth.users.create(name)
    client = await site.browser()

    async def users(query: str) -> dict[str, Any]:
        response = await client.get(f"/api/v1/admin/users{query}", headers=bearer(raw))
        assert response.status == 200
        body: dict[str, Any] = await response.json()
        return body

    everyone = await users("")
    assert everyone["total"] == 6
    assert [u["username"] for u in everyone["users"]] == sorted(
        ["admin", "alice", "albert", "bob", "carol", "alfred"]
    )
    assert all("password_hash" not in u and "has_password" in u for u in everyone["users"])

    found = await users("?q=AL")
    assert found["total"] == 3
    assert {u["username"] for u in found["users"]} == {"alice", "albert", "alfred"}

    first = await users("?per_page=2&page=1")
    second = await users("?per_page=2&page=2")
    last = await users("?per_page=2&page=3")
    beyond = await users("?per_page=2&page=4")
    pages = [u["username"] for page in (first, second, last) for u in page["users"]]
    assert pages == [u["username"] for u in everyone["users"]]
    assert (first["page"], second["page"], first["total"]) == (1, 2, 6)
    assert beyond["users"] == []


async def test_admin_changes_a_role(site: Site) -> None:
    _, raw = await _api_token(site, "admin", role="admin")
    alice, alices = await _api_token(site, "alice")
    client = await site.browser()
    assert (await client.get("/api/v1/admin/audit", headers=bearer(alices))).status == 403
    response = await client.patch(
        f"/api/v1/admin/users/{alice.id}", json={"role": "admin"}, headers=bearer(raw)
    )
    assert response.status == 200
    assert (await response.json())["role"] == "admin"
    assert (await client.get("/api/v1/admin/audit", headers=bearer(alices))).status == 200
    back = await client.patch(
        f"/api/v1/admin/users/{alice.id}", json={"role": "user"}, headers=bearer(raw)
    )
    assert back.status == 200
    assert (await client.get("/api/v1/admin/audit", headers=bearer(alices))).status == 403


async def test_disabling_a_user_ends_their_cookie_token_and_jwt_at_once(site: Site) -> None:
    _, raw = await _api_token(site, "admin", role="admin")
    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    alices_token, _ = await site.auth.api_tokens.create(alice.id, "script")
    jwt = (await site.tokens("alice", USER_PASSWORD))["access_token"]
    other = await site.browser()
    assert await me_status(browser) == 200
    assert await me_status(other, bearer(alices_token)) == 200
    assert await me_status(other, bearer(jwt)) == 200

    response = await other.patch(
        f"/api/v1/admin/users/{alice.id}", json={"disabled": True}, headers=bearer(raw)
    )
    assert response.status == 200
    assert (await response.json())["disabled"] is True
    assert await me_status(browser) == 401
    assert await me_status(other, bearer(alices_token)) == 401
    assert await me_status(other, bearer(jwt)) == 401
    refused = await other.post(
        "/api/v1/auth/token", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert refused.status == 401


async def test_deleting_a_user_removes_their_sessions_tokens_and_notifications(
    site: Site,
) -> None:
    _, raw = await _api_token(site, "admin", role="admin")
    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    alices_token, _ = await site.auth.api_tokens.create(alice.id, "script")
    services = site.app[SERVICES]
    await services.notifications.create(user_id=alice.id, type="test", title="hello")
    mine = {"user_id": alice.id}
    assert await site.count("sessions", "user_id = :user_id", **mine) == 1
    assert await site.count("notifications", "user_id = :user_id", **mine) == 1

    client = await site.browser()
    response = await client.delete(f"/api/v1/admin/users/{alice.id}", headers=bearer(raw))
    assert response.status == 200
    assert await me_status(browser) == 401
    assert await me_status(client, bearer(alices_token)) == 401
    for table in ("sessions", "api_tokens", "notifications", "users"):
        column = "id" if table == "users" else "user_id"
        assert await site.count(table, f"{column} = :user_id", **mine) == 0, table
    gone = await client.get(f"/api/v1/admin/users/{alice.id}", headers=bearer(raw))
    assert gone.status == 404


async def test_an_admin_cannot_demote_disable_or_delete_themselves(site: Site) -> None:
    admin, browser = await site.admin()
    csrf = {"X-CSRF-Token": await csrf_of(browser)}
    await site.auth.users.create("other", role="admin")  # not the last admin: only "self" applies
    url = f"/api/v1/admin/users/{admin.id}"
    for change in ({"role": "user"}, {"disabled": True}, {"role": "user", "disabled": True}):
        response = await browser.patch(url, json=change, headers=csrf)
        assert response.status == 403, change
    assert (await browser.delete(url, headers=csrf)).status == 403
    me = await browser.get("/api/v1/me")
    assert me.status == 200
    assert (await me.json())["role"] == "admin"
    assert (await site.auth.users.details(admin.id)).user.disabled is False


async def _two_admins(site: Site) -> tuple[tuple[Any, str], tuple[Any, str], TestClient]:
    first = await _api_token(site, "first", role="admin")
    second = await _api_token(site, "second", role="admin")
    return first, second, await site.browser()


async def _admins(site: Site) -> list[str]:
    rows = await site.db.fetch_all(
        "SELECT username FROM users WHERE role = 'admin' AND disabled = false ORDER BY username"
    )
    return [row["username"] for row in rows]


async def test_one_of_two_admins_can_be_demoted_then_the_other_keeps_admin(site: Site) -> None:
    (first, firsts), (second, seconds), client = await _two_admins(site)
    demoted = await client.patch(
        f"/api/v1/admin/users/{second.id}", json={"role": "user"}, headers=bearer(firsts)
    )
    assert demoted.status == 200
    # the demoted one can no longer touch the remaining admin
    attempt = await client.patch(
        f"/api/v1/admin/users/{first.id}", json={"role": "user"}, headers=bearer(seconds)
    )
    assert attempt.status == 403
    assert await _admins(site) == ["first"]


async def test_two_admins_demoting_each_other_at_once_leave_one_admin(site: Site) -> None:
    (first, firsts), (second, seconds), client = await _two_admins(site)
    responses = await asyncio.gather(
        client.patch(
            f"/api/v1/admin/users/{second.id}", json={"role": "user"}, headers=bearer(firsts)
        ),
        client.patch(
            f"/api/v1/admin/users/{first.id}", json={"role": "user"}, headers=bearer(seconds)
        ),
    )
    statuses = sorted(r.status for r in responses)
    bodies = [await r.text() for r in responses]
    # both pass the access check together, so the refusal is the last-admin rule's
    assert statuses == [200, 403], bodies
    assert len(await _admins(site)) == 1


async def test_two_admins_deleting_each_other_at_once_leave_one_admin(
    make_site: MakeSite,
) -> None:
    barrier = Candidate("barrier", lambda: importlib.import_module(removal_barrier.__name__))
    site = await make_site(plugins=[barrier])
    removal_barrier.reset()
    (first, firsts), (second, seconds), client = await _two_admins(site)
    responses = await asyncio.gather(
        client.delete(f"/api/v1/admin/users/{second.id}", headers=bearer(firsts)),
        client.delete(f"/api/v1/admin/users/{first.id}", headers=bearer(seconds)),
    )
    statuses = sorted(r.status for r in responses)
    assert len(await _admins(site)) == 1, statuses
    assert statuses == [200, 403]


async def test_disabling_one_of_two_admins_then_the_last_is_protected(site: Site) -> None:
    (first, firsts), (second, _), client = await _two_admins(site)
    disabled = await client.patch(
        f"/api/v1/admin/users/{second.id}", json={"disabled": True}, headers=bearer(firsts)
    )
    assert disabled.status == 200
    assert await _admins(site) == ["first"]
    own = await client.patch(
        f"/api/v1/admin/users/{first.id}", json={"disabled": True}, headers=bearer(firsts)
    )
    assert own.status == 403
    assert await _admins(site) == ["first"]
