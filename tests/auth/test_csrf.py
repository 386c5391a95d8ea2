"""CSRF: a state-changing request authenticated by the session cookie must carry the token."""

from __future__ import annotations

import re

from medianest_server.web.access import ROUTE_TABLE

from .conftest import USER_PASSWORD, Site, bearer, csrf_of, me_status

WRONG = {"X-CSRF-Token": "0" * 64}


async def test_cookie_requests_without_or_with_a_wrong_csrf_token_change_nothing(
    site: Site,
) -> None:
    _, admin = await site.admin()
    alice = await site.create_user("alice")
    phone = await site.sign_in("alice", USER_PASSWORD)
    client = await site.sign_in("alice", USER_PASSWORD)
    phone_id = next(
        s["id"]
        for s in (await (await client.get("/api/v1/me/sessions")).json())["sessions"]
        if not s["current"]
    )
    alice_token = await csrf_of(client)
    # another signed-in person's token is as wrong as a made-up one
    admins_token = {"X-CSRF-Token": await csrf_of(admin)}

    for headers in ({}, WRONG, admins_token):
        create = await client.post("/api/v1/me/tokens", json={"name": "x"}, headers=headers)
        assert create.status == 403
        revoke = await client.delete(f"/api/v1/me/sessions/{phone_id}", headers=headers)
        assert revoke.status == 403
        password = await client.post(
            "/api/v1/me/password",
            json={"current_password": USER_PASSWORD, "new_password": "changed password"},
            headers=headers,
        )
        assert password.status == 403
    for headers in ({}, WRONG, {"X-CSRF-Token": alice_token}):
        patch = await admin.patch(
            f"/api/v1/admin/users/{alice.id}", json={"role": "admin"}, headers=headers
        )
        assert patch.status == 403
        delete = await admin.delete(f"/api/v1/admin/users/{alice.id}", headers=headers)
        assert delete.status == 403

    assert await site.count("api_tokens") == 0
    assert await me_status(phone) == 200
    assert (await site.auth.users.get(alice.id)).role == "user"  # type: ignore[union-attr]
    await site.sign_in("alice", USER_PASSWORD)  # the password did not change

    # the same requests with the right token work
    ok = {"X-CSRF-Token": alice_token}
    assert (await client.post("/api/v1/me/tokens", json={"name": "x"}, headers=ok)).status == 201
    assert (await client.delete(f"/api/v1/me/sessions/{phone_id}", headers=ok)).status == 200
    assert await me_status(phone) == 401
    patch = await admin.patch(
        f"/api/v1/admin/users/{alice.id}",
        json={"role": "admin"},
        headers={"X-CSRF-Token": await csrf_of(admin)},
    )
    assert patch.status == 200


async def test_csrf_token_in_a_form_field_is_accepted(site: Site) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    wrong = await client.post("/api/v1/auth/logout", data={"csrf_token": "0" * 64})
    assert wrong.status == 403
    assert await me_status(client) == 200
    right = await client.post("/api/v1/auth/logout", data={"csrf_token": await csrf_of(client)})
    assert right.status == 200
    assert await me_status(client) == 401


async def test_bearer_requests_need_no_csrf_token(site: Site) -> None:
    await site.create_user("alice")
    access = (await site.tokens("alice", USER_PASSWORD))["access_token"]
    client = await site.browser()
    created = await client.post("/api/v1/me/tokens", json={"name": "ci"}, headers=bearer(access))
    assert created.status == 201
    raw = (await created.json())["token"]
    again = await client.post("/api/v1/me/tokens", json={"name": "ci 2"}, headers=bearer(raw))
    assert again.status == 201
    assert await site.count("api_tokens") == 2


async def test_every_state_changing_route_refuses_a_cookie_request_without_the_token(
    site: Site,
) -> None:
    admin_user, admin = await site.admin()
    alice = await site.create_user("alice")
    changing = [
        info
        for info in site.app[ROUTE_TABLE].values()
        if info.method not in ("GET", "HEAD", "OPTIONS")
    ]
    assert len(changing) >= 10
    for info in changing:
        path = re.sub(r"\{[^}:]+:\\d\+\}", str(alice.id), info.path)
        path = re.sub(r"\{[^}]+\}", "x", path)
        for kwargs in ({"json": {}}, {"data": {"csrf_token": "0" * 64}}):
            response = await admin.request(info.method, path, allow_redirects=False, **kwargs)
            assert response.status == 403, (info.method, path, kwargs, response.status)
    assert await me_status(admin) == 200
    assert await site.count("users") == 2
    assert await site.count("api_tokens") == 0
    assert await site.count("sessions", "revoked_at IS NOT NULL") == 0
    assert (await site.auth.users.get(alice.id)) is not None
    assert (await site.auth.users.get(admin_user.id)).role == "admin"  # type: ignore[union-attr]
