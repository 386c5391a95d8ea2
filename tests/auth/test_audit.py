"""The audit log records who did what security-relevant thing, from where, and when."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .conftest import USER_PASSWORD, Site, csrf_of


async def test_audit_log_records_security_events_with_actor_address_and_time(
    site: Site,
) -> None:
    _, admin = await site.admin()
    await site.create_user("alice")
    bob = await site.auth.users.create("bob")
    alice = await site.sign_in("alice", USER_PASSWORD)
    await site.sign_in("alice", USER_PASSWORD)  # a second device
    alice_csrf = {"X-CSRF-Token": await csrf_of(alice)}
    admin_csrf = {"X-CSRF-Token": await csrf_of(admin)}

    failed = await (await site.browser()).post(
        "/api/v1/auth/token", json={"username": "alice", "password": "wrong password"}
    )
    assert failed.status == 401
    created = await alice.post("/api/v1/me/tokens", json={"name": "cli"}, headers=alice_csrf)
    token_id = (await created.json())["id"]
    assert (await alice.delete(f"/api/v1/me/tokens/{token_id}", headers=alice_csrf)).status == 200
    phone_id = next(
        s["id"]
        for s in (await (await alice.get("/api/v1/me/sessions")).json())["sessions"]
        if not s["current"]
    )
    assert (await alice.delete(f"/api/v1/me/sessions/{phone_id}", headers=alice_csrf)).status == 200
    changed = await alice.post(
        "/api/v1/me/password",
        json={"current_password": USER_PASSWORD, "new_password": "another password"},
        headers=alice_csrf,
    )
    assert changed.status == 200
    bob_url = f"/api/v1/admin/users/{bob.id}"
    assert (await admin.patch(bob_url, json={"role": "admin"}, headers=admin_csrf)).status == 200
    assert (await admin.patch(bob_url, json={"disabled": True}, headers=admin_csrf)).status == 200
    assert (await admin.delete(bob_url, headers=admin_csrf)).status == 200
    out = await alice.post(
        "/logout", data={"csrf_token": alice_csrf["X-CSRF-Token"]}, allow_redirects=False
    )
    assert out.status == 303

    async def audit(query: str = "") -> list[dict[str, Any]]:
        response = await admin.get(f"/api/v1/admin/audit?per_page=500{query}")
        assert response.status == 200
        entries: list[dict[str, Any]] = (await response.json())["entries"]
        return entries

    entries = await audit()
    by_action: dict[str, list[dict[str, Any]]] = {}
    for entry in entries:
        by_action.setdefault(entry["action"], []).append(entry)
    expected_actor = {
        "auth.login.succeeded": "alice",
        "auth.login.failed": "alice",
        "auth.logout": "alice",
        "auth.password.changed": "alice",
        "auth.session.revoked": "alice",
        "auth.token.created": "alice",
        "auth.token.revoked": "alice",
        "user.role.changed": "admin",
        "user.disabled": "admin",
        "user.deleted": "admin",
    }
    now = site.clock.now()
    for action, actor in expected_actor.items():
        assert action in by_action, f"{action} is not in the audit log"
        entry = next(e for e in by_action[action] if e["actor_name"] == actor)
        assert entry["ip"] == "127.0.0.1", action
        assert abs(datetime.fromisoformat(entry["at"]) - now) < timedelta(seconds=5), action
    assert by_action["auth.login.failed"][0]["actor_user_id"] is None
    assert by_action["user.deleted"][0]["target_id"] == str(bob.id)
    assert by_action["user.role.changed"][0]["details"] == {"from": "user", "to": "admin"}
    serialized = repr(entries)
    for secret in (USER_PASSWORD, "another password", "wrong password"):
        assert secret not in serialized

    logins = await audit("&action=auth.login")
    assert logins and all(e["action"].startswith("auth.login") for e in logins)
    assert {e["action"] for e in logins} == {"auth.login.succeeded", "auth.login.failed"}
    alices = await audit("&actor=alice")
    assert alices and all(e["actor_name"] == "alice" for e in alices)
    admins_user_changes = await audit("&actor=ADMIN&action=user.")
    assert {e["action"] for e in admins_user_changes} == {
        "user.role.changed",
        "user.disabled",
        "user.deleted",
    }
