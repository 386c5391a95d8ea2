"""One user cannot see, revoke or change another's sessions, tokens or notifications."""

from __future__ import annotations

from medianest_server.appkeys import SERVICES

from .conftest import USER_PASSWORD, Site, bearer, csrf_of, me_status


async def test_a_user_cannot_touch_another_users_sessions_tokens_or_notifications(
    site: Site,
) -> None:
    alice = await site.create_user("alice")
    await site.create_user("bob")
    alices_browser = await site.sign_in("alice", USER_PASSWORD)
    bob = await site.sign_in("bob", USER_PASSWORD)
    bob_csrf = {"X-CSRF-Token": await csrf_of(bob)}

    alices_session = (await (await alices_browser.get("/api/v1/me/sessions")).json())["sessions"]
    (session_id,) = [s["id"] for s in alices_session]
    created = await alices_browser.post(
        "/api/v1/me/tokens",
        json={"name": "alice's"},
        headers={"X-CSRF-Token": await csrf_of(alices_browser)},
    )
    alices_token = await created.json()
    services = site.app[SERVICES]
    notification_id = await services.notifications.create(
        user_id=alice.id, type="test", title="for alice only"
    )

    # bob's own lists show none of it
    bobs_sessions = (await (await bob.get("/api/v1/me/sessions")).json())["sessions"]
    assert session_id not in {s["id"] for s in bobs_sessions}
    assert (await (await bob.get("/api/v1/me/tokens")).json())["tokens"] == []
    bobs_notes = await (await bob.get("/api/v1/notifications")).json()
    assert (bobs_notes["notifications"], bobs_notes["total"], bobs_notes["unread"]) == ([], 0, 0)

    # guessing alice's ids answers as if they did not exist
    for method, path in (
        ("DELETE", f"/api/v1/me/sessions/{session_id}"),
        ("DELETE", f"/api/v1/me/tokens/{alices_token['id']}"),
        ("POST", f"/api/v1/notifications/{notification_id}/read"),
    ):
        response = await bob.request(method, path, headers=bob_csrf)
        assert response.status == 404, (method, path)
        assert (await response.json())["error"]["code"] == "not_found"
    read_all = await bob.post("/api/v1/notifications/read-all", headers=bob_csrf)
    assert (await read_all.json())["read"] == 0
    # the same through the web pages' forms
    form = {"csrf_token": bob_csrf["X-CSRF-Token"]}
    for path in (
        f"/profile/sessions/{session_id}/revoke",
        f"/profile/tokens/{alices_token['id']}/revoke",
    ):
        response = await bob.post(path, data=form, allow_redirects=False)
        assert response.status == 404, path
    marked = await bob.post(
        f"/notifications/{notification_id}/read", data=form, allow_redirects=False
    )
    assert marked.status in (303, 404)

    # and alice's things still work
    assert await me_status(alices_browser) == 200
    assert await me_status(await site.browser(), bearer(alices_token["token"])) == 200
    notes = await (await alices_browser.get("/api/v1/notifications")).json()
    assert [(n["id"], n["read"]) for n in notes["notifications"]] == [(notification_id, False)]
    assert notes["unread"] == 1


async def test_a_user_reading_their_own_notification_works(site: Site) -> None:
    alice = await site.create_user("alice")
    browser = await site.sign_in("alice", USER_PASSWORD)
    services = site.app[SERVICES]
    note = await services.notifications.create(user_id=alice.id, type="test", title="x")
    response = await browser.post(
        f"/api/v1/notifications/{note}/read", headers={"X-CSRF-Token": await csrf_of(browser)}
    )
    assert response.status == 200
    notes = await (await browser.get("/api/v1/notifications")).json()
    assert notes["unread"] == 0
    assert notes["notifications"][0]["read"] is True
