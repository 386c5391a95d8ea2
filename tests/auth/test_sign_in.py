"""Signing in and out through the login form: sessions, fixation, cookie flags, expiry."""

from __future__ import annotations

from aiohttp import DummyCookieJar

from .conftest import (
    USER_PASSWORD,
    MakeSite,
    Site,
    csrf_of,
    hidden_csrf,
    me_status,
    session_cookie,
    set_cookie_header,
)


async def test_sign_in_with_the_form_then_sign_out_ends_the_session(site: Site) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    me = await client.get("/api/v1/me")
    assert me.status == 200
    body = await me.json()
    assert (body["username"], body["role"], body["auth"]) == ("alice", "user", "cookie")

    cookie = session_cookie(client)
    out = await client.post(
        "/logout", data={"csrf_token": await csrf_of(client)}, allow_redirects=False
    )
    assert out.status == 303
    assert out.headers["Location"] == "/login"
    assert await me_status(client) == 401
    # the old cookie value, replayed, is dead on the server too (not only deleted in the jar)
    replay = await site.browser(cookie_jar=DummyCookieJar())
    assert await me_status(replay, {"Cookie": f"medianest_session={cookie}"}) == 401


async def test_sign_out_without_the_csrf_token_is_refused_and_keeps_the_session(
    site: Site,
) -> None:
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    refused = await client.post("/logout", data={}, allow_redirects=False)
    assert refused.status == 403
    assert await me_status(client) == 200


async def test_wrong_password_shows_an_error_and_starts_no_session(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser()
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={
            "csrf_token": hidden_csrf(await page.text()),
            "username": "alice",
            "password": "not the password",
        },
        allow_redirects=False,
    )
    assert response.status == 401
    text = await response.text()
    assert "wrong username or password" in text
    assert 'value="alice"' in text  # the form keeps the username
    assert "not the password" not in text
    assert "medianest_session" not in response.cookies
    assert await me_status(client) == 401
    assert await site.count("sessions") == 0


async def test_login_form_without_csrf_token_is_refused(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser()
    await client.get("/login")
    response = await client.post(
        "/login", data={"username": "alice", "password": USER_PASSWORD}, allow_redirects=False
    )
    assert response.status == 403
    assert "medianest_session" not in response.cookies
    assert await site.count("sessions") == 0


async def test_a_session_id_chosen_before_sign_in_is_worthless_after_it(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser(cookie_jar=DummyCookieJar())  # cookies by hand, exactly
    planted = "medianest_session=attacker-chosen"
    page = await client.get("/login", headers={"Cookie": planted})
    pre = page.cookies["medianest_pre"].value
    response = await client.post(
        "/login",
        data={
            "csrf_token": hidden_csrf(await page.text()),
            "username": "alice",
            "password": USER_PASSWORD,
        },
        headers={"Cookie": f"{planted}; medianest_pre={pre}"},
        allow_redirects=False,
    )
    assert response.status == 303
    issued = response.cookies["medianest_session"].value
    assert issued not in ("", "attacker-chosen")
    assert await me_status(client, {"Cookie": f"medianest_session={issued}"}) == 200
    assert await me_status(client, {"Cookie": planted}) == 401


async def test_signing_in_again_ends_the_earlier_session_of_that_browser(site: Site) -> None:
    """`start_browser_session` promises "any earlier one is ended": a sign-in in a browser that
    still holds a live session (a script, or a sign-in provider's callback, which needs no
    form) gets a new id, and the old id must stop working."""
    await site.create_user("alice")
    await site.create_user("bob")
    client = await site.browser(cookie_jar=DummyCookieJar())
    old = session_cookie(await site.sign_in("alice", USER_PASSWORD))
    old_cookie = f"medianest_session={old}"
    me = await client.get("/api/v1/me", headers={"Cookie": old_cookie})
    session_csrf = (await me.json())["csrf_token"]

    page = await client.get("/login")  # the form, fetched without the session cookie
    pre = page.cookies["medianest_pre"].value
    response = await client.post(
        "/login",
        data={
            "csrf_token": hidden_csrf(await page.text()),
            "username": "bob",
            "password": USER_PASSWORD,
        },
        # the session's CSRF token in the header satisfies the signed-in check, the form field
        # the sign-in form's own check
        headers={"Cookie": f"{old_cookie}; medianest_pre={pre}", "X-CSRF-Token": session_csrf},
        allow_redirects=False,
    )
    assert response.status == 303, await response.text()
    new = response.cookies["medianest_session"].value
    assert new != old
    me = await client.get("/api/v1/me", headers={"Cookie": f"medianest_session={new}"})
    assert (await me.json())["username"] == "bob"
    assert await me_status(client, {"Cookie": old_cookie}) == 401


async def test_session_cookie_is_httponly_samesite_lax_and_site_wide(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser()
    page = await client.get("/login")
    response = await client.post(
        "/login",
        data={
            "csrf_token": hidden_csrf(await page.text()),
            "username": "alice",
            "password": USER_PASSWORD,
        },
        allow_redirects=False,
    )
    header = set_cookie_header(response, "medianest_session")
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert "httponly" in attributes
    assert "samesite=lax" in attributes
    assert "path=/" in attributes
    assert "secure" not in attributes  # base_url is http://


async def test_session_cookie_is_secure_when_base_url_is_https(make_site: MakeSite) -> None:
    site = await make_site(server={"base_url": "https://media.example.org"})
    await site.create_user("alice")
    # a Secure cookie is not sent back over the test's plain http: carry cookies by hand
    client = await site.browser(cookie_jar=DummyCookieJar())
    page = await client.get("/login")
    assert "secure" in set_cookie_header(page, "medianest_pre").lower()
    pre = page.cookies["medianest_pre"].value
    response = await client.post(
        "/login",
        data={
            "csrf_token": hidden_csrf(await page.text()),
            "username": "alice",
            "password": USER_PASSWORD,
        },
        headers={"Cookie": f"medianest_pre={pre}"},
        allow_redirects=False,
    )
    assert response.status == 303
    header = set_cookie_header(response, "medianest_session")
    attributes = [part.strip().lower() for part in header.split(";")[1:]]
    assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)


async def test_sign_in_never_redirects_to_another_site(site: Site) -> None:
    """`next` is a path on this site; anything a browser would read as another host is dropped
    (browsers remove tabs and newlines from URLs, so "/\\t/evil" is "//evil")."""
    await site.create_user("alice")
    for target in (
        "//evil.example/",
        "https://evil.example/",
        "/\\evil.example",
        "/\t/evil.example",
    ):
        client = await site.browser()
        page = await client.get("/login")
        response = await client.post(
            "/login",
            data={
                "csrf_token": hidden_csrf(await page.text()),
                "username": "alice",
                "password": USER_PASSWORD,
                "next": target,
            },
            allow_redirects=False,
        )
        assert response.status == 303, (target, response.status)
        location = response.headers["Location"]
        as_browser_reads_it = location.replace("\t", "").replace("\n", "").replace("\r", "")
        assert as_browser_reads_it.startswith("/"), (target, location)
        assert not as_browser_reads_it.startswith(("//", "/\\")), (target, location)
    ok = await site.browser()
    page = await ok.get("/login?next=/settings")
    assert 'name="next" value="/settings"' in await page.text()


async def test_an_idle_session_ends_after_session_idle_days(make_site: MakeSite) -> None:
    site = await make_site(auth={"session_idle_days": 2, "session_absolute_days": 5})
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    site.clock.advance(36 * 3600)  # used within the idle limit: stays, and the use counts
    assert await me_status(client) == 200
    site.clock.advance(36 * 3600)  # 3 days since sign-in, 1.5 since last use
    assert await me_status(client) == 200
    site.clock.advance(2 * 24 * 3600 + 1)  # idle for longer than 2 days
    assert await me_status(client) == 401


async def test_a_session_in_use_still_ends_after_session_absolute_days(
    make_site: MakeSite,
) -> None:
    site = await make_site(auth={"session_idle_days": 2, "session_absolute_days": 5})
    await site.create_user("alice")
    client = await site.sign_in("alice", USER_PASSWORD)
    for _ in range(4):
        site.clock.advance(24 * 3600)
        assert await me_status(client) == 200
    site.clock.advance(24 * 3600 + 1)
    assert await me_status(client) == 401


async def test_passwords_are_stored_as_memory_hard_argon2id_hashes(
    site: Site, real_password_hashing: None
) -> None:
    alice = await site.create_user("alice")
    stored = await site.db.fetch_val(
        "SELECT password_hash FROM users WHERE id = :id", {"id": alice.id}
    )
    assert stored.startswith("$argon2id$")
    assert USER_PASSWORD not in stored
    cost = dict(part.split("=") for part in stored.split("$")[3].split(","))
    assert int(cost["m"]) >= 19 * 1024  # KiB: at least OWASP's minimum for Argon2id
    client = await site.sign_in("alice", USER_PASSWORD)
    assert await me_status(client) == 200
