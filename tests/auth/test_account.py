"""A person's own account: password, devices (sessions) and personal API tokens."""

from __future__ import annotations

from .conftest import USER_PASSWORD, Site, bearer, csrf_of, me_status

NEW_PASSWORD = "a brand new password"


async def test_password_change_with_a_wrong_current_password_changes_nothing(site: Site) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    other_device = await site.sign_in("alice", USER_PASSWORD)
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": "not my password", "new_password": NEW_PASSWORD},
        headers={"X-CSRF-Token": await csrf_of(client)},
    )
    assert response.status == 400
    assert "current_password" in (await response.json())["error"]["details"]
    assert await me_status(other_device) == 200
    await site.sign_in("alice", USER_PASSWORD)  # the old password still works
    bad = await site.browser()
    refused = await bad.post(
        "/api/v1/auth/token", json={"username": "alice", "password": NEW_PASSWORD}
    )
    assert refused.status == 401


async def test_password_change_signs_out_every_other_session_but_this_one(site: Site) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    laptop = await site.sign_in("alice", USER_PASSWORD)
    api = await site.tokens("alice", USER_PASSWORD)
    assert await me_status(laptop) == 200
    assert await me_status(client, bearer(api["access_token"])) == 200

    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers={"X-CSRF-Token": await csrf_of(client)},
    )
    assert response.status == 200
    assert (await response.json())["other_sessions_ended"] == 2

    assert await me_status(client) == 200
    assert await me_status(laptop) == 401
    assert await me_status(await site.browser(), bearer(api["access_token"])) == 401
    refresh = await (await site.browser()).post(
        "/api/v1/auth/refresh", json={"refresh_token": api["refresh_token"]}
    )
    assert refresh.status == 401

    fresh = await site.browser()
    old = await fresh.post(
        "/api/v1/auth/token", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert old.status == 401
    await site.sign_in("alice", NEW_PASSWORD)


async def test_too_short_new_password_is_refused_and_the_old_one_stays(site: Site) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    response = await client.post(
        "/api/v1/me/password",
        json={"current_password": USER_PASSWORD, "new_password": "short"},
        headers={"X-CSRF-Token": await csrf_of(client)},
    )
    assert response.status == 400
    assert "new_password" in (await response.json())["error"]["details"]
    await site.sign_in("alice", USER_PASSWORD)


async def test_devices_list_each_sign_in_and_one_can_be_revoked(site: Site) -> None:
    await site.create_user("alice")
    phone = await site.sign_in("alice", USER_PASSWORD, headers={"User-Agent": "PhoneBrowser/1"})
    laptop = await site.sign_in("alice", USER_PASSWORD, headers={"User-Agent": "LaptopBrowser/2"})
    listed = await laptop.get("/api/v1/me/sessions", headers={"User-Agent": "LaptopBrowser/2"})
    assert listed.status == 200
    sessions = (await listed.json())["sessions"]
    assert len(sessions) == 2
    for session in sessions:
        assert {"id", "created_at", "last_seen_at", "ip", "user_agent", "current"} <= set(session)
        assert session["ip"] == "127.0.0.1"
        assert session["created_at"] and session["last_seen_at"]
    by_agent = {s["user_agent"]: s for s in sessions}
    assert by_agent["LaptopBrowser/2"]["current"] is True
    assert by_agent["PhoneBrowser/1"]["current"] is False

    phone_id = by_agent["PhoneBrowser/1"]["id"]
    revoked = await laptop.delete(
        f"/api/v1/me/sessions/{phone_id}", headers={"X-CSRF-Token": await csrf_of(laptop)}
    )
    assert revoked.status == 200
    assert await me_status(phone) == 401
    assert await me_status(laptop) == 200
    left = (await (await laptop.get("/api/v1/me/sessions")).json())["sessions"]
    assert [s["user_agent"] for s in left] == ["LaptopBrowser/2"]


async def test_admin_signs_a_user_out_everywhere(site: Site) -> None:
    _, admin = await site.admin()
    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    api = await site.tokens("alice", USER_PASSWORD)
    response = await admin.delete(
        f"/api/v1/admin/users/{alice.id}/sessions", headers={"X-CSRF-Token": await csrf_of(admin)}
    )
    assert response.status == 200
    assert (await response.json())["sessions_ended"] == 2
    assert await me_status(browser) == 401
    assert await me_status(await site.browser(), bearer(api["access_token"])) == 401
    assert await me_status(admin) == 200


async def test_api_token_is_shown_once_works_as_bearer_and_stops_when_revoked(
    site: Site,
) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    csrf = await csrf_of(client)
    created = await client.post(
        "/api/v1/me/tokens", json={"name": "home script"}, headers={"X-CSRF-Token": csrf}
    )
    assert created.status == 201
    body = await created.json()
    raw = body["token"]
    assert raw.startswith("mn_") and len(raw) > 40
    assert body["name"] == "home script"
    assert body["last_used_at"] is None

    listing = await client.get("/api/v1/me/tokens")
    text = await listing.text()
    assert raw not in text
    stored_hash = await site.db.fetch_val("SELECT token_hash FROM api_tokens")
    assert stored_hash and stored_hash not in text and stored_hash != raw
    (listed,) = (await listing.json())["tokens"]
    assert "token" not in listed and "token_hash" not in listed
    assert listed["name"] == "home script"
    assert listed["last_used_at"] is None

    script = await site.browser()
    me = await script.get("/api/v1/me", headers=bearer(raw))
    assert me.status == 200
    assert (await me.json())["username"] == "alice"
    assert (await me.json())["auth"] == "api_token"
    (used,) = (await (await client.get("/api/v1/me/tokens")).json())["tokens"]
    assert used["last_used_at"] is not None

    revoked = await client.delete(
        f"/api/v1/me/tokens/{listed['id']}", headers={"X-CSRF-Token": csrf}
    )
    assert revoked.status == 200
    assert await me_status(script, bearer(raw)) == 401
    assert (await (await client.get("/api/v1/me/tokens")).json())["tokens"] == []
    # a token that was never issued, in the right shape, is refused the same way
    assert await me_status(script, bearer(raw[:-4] + "AAAA")) == 401
