"""First run: a stranger without the setup code cannot claim a fresh instance."""

from __future__ import annotations

from aiohttp.test_utils import TestClient

from .conftest import MakeSite, Site, hidden_csrf

PASSWORD = "first admin password"


async def _setup_form(client: TestClient) -> str:
    page = await client.get("/setup")
    assert page.status == 200
    return hidden_csrf(await page.text())


async def test_setup_page_asks_for_the_code_while_no_user_exists(site: Site) -> None:
    client = await site.browser()
    page = await client.get("/setup")
    assert page.status == 200
    text = await page.text()
    for field in ('name="code"', 'name="username"', 'name="password"', 'name="csrf_token"'):
        assert field in text
    login = await client.get("/login", allow_redirects=False)
    assert login.status == 303
    assert login.headers["Location"] == "/setup"


async def test_setup_without_the_right_code_creates_nothing(site: Site) -> None:
    client = await site.browser()
    code = await site.auth.setup.code()
    assert code is not None
    token = await _setup_form(client)

    missing = await client.post(
        "/setup",
        data={"csrf_token": token, "username": "mallory", "password": PASSWORD},
        allow_redirects=False,
    )
    assert missing.status == 400
    assert "code" in await missing.text()

    wrong = await client.post(
        "/setup",
        data={
            "csrf_token": token,
            "code": "AAAA-BBBB-CCCC-DDDD",
            "username": "mallory",
            "password": PASSWORD,
        },
        allow_redirects=False,
    )
    assert wrong.status == 400
    assert "setup code is wrong" in await wrong.text()
    assert "medianest_session" not in wrong.cookies
    assert await site.count("users") == 0
    # the real code still works afterwards: failing did not burn it
    assert await site.auth.setup.code() == code
    assert (await client.get("/setup")).status == 200


async def test_setup_form_without_a_valid_csrf_token_is_refused(site: Site) -> None:
    code = await site.auth.setup.code()
    client = await site.browser()
    await _setup_form(client)  # has the pre-session cookie, but sends no or a wrong token
    fields = {"code": code, "username": "admin", "password": PASSWORD}
    assert (await client.post("/setup", data=fields)).status == 403
    wrong = await client.post("/setup", data={**fields, "csrf_token": "0" * 64})
    assert wrong.status == 403
    # a token from another visitor's form does not fit this visitor's cookie
    other = await site.browser()
    stolen = await client.post("/setup", data={**fields, "csrf_token": await _setup_form(other)})
    assert stolen.status == 403
    assert await site.count("users") == 0


async def test_setup_with_the_code_creates_a_signed_in_admin_then_setup_is_gone(
    site: Site,
) -> None:
    code = await site.auth.setup.code()
    assert code is not None
    client = await site.browser()
    token = await _setup_form(client)
    done = await client.post(
        "/setup",
        data={"csrf_token": token, "code": code, "username": "owner", "password": PASSWORD},
        allow_redirects=False,
    )
    assert done.status == 303
    assert "medianest_session" in done.cookies

    me = await client.get("/api/v1/me")
    assert me.status == 200
    body = await me.json()
    assert (body["username"], body["role"]) == ("owner", "admin")
    # set-up signed the admin in: the users list does not say "never"
    (owner,) = (await (await client.get("/api/v1/admin/users")).json())["users"]
    assert owner["last_login_at"] is not None

    stranger = await site.browser()
    assert (await stranger.get("/setup")).status == 404
    again = await stranger.post(
        "/setup",
        data={"csrf_token": token, "code": code, "username": "mallory", "password": PASSWORD},
    )
    assert again.status == 404
    assert await site.count("users") == 1
    assert await site.auth.setup.code() is None
    # and /login is the sign-in page again
    login = await stranger.get("/login", allow_redirects=False)
    assert login.status == 200


async def test_wrong_setup_codes_from_a_stranger_do_not_lock_the_owner_out(
    make_site: MakeSite,
) -> None:
    """Anyone can reach /setup on a fresh instance; five wrong codes from one address must not
    block the owner, who comes from another address, from setting it up."""
    site = await make_site(server={"trusted_proxies": ["127.0.0.1"]})
    code = await site.auth.setup.code()
    stranger = await site.browser()
    stranger_ip = {"X-Forwarded-For": "203.0.113.66"}
    token = await _setup_form(stranger)
    for attempt in range(6):
        await stranger.post(
            "/setup",
            data={
                "csrf_token": token,
                "code": f"AAAA-BBBB-CCCC-DDD{attempt}",
                "username": "mallory",
                "password": PASSWORD,
            },
            headers=stranger_ip,
        )
    owner = await site.browser()
    owner_token = await _setup_form(owner)
    done = await owner.post(
        "/setup",
        data={"csrf_token": owner_token, "code": code, "username": "owner", "password": PASSWORD},
        headers={"X-Forwarded-For": "198.51.100.7"},
        allow_redirects=False,
    )
    assert done.status == 303, await done.text()
    assert await site.count("users") == 1


async def test_a_user_who_is_not_an_admin_does_not_end_setup(site: Site) -> None:
    """A login provider may let a user in before anyone set MediaNest up (a Plex friend who
    came first): setup stays open until there is an admin."""
    await site.create_user("friend")
    assert await site.auth.setup.code() is not None
    assert (await (await site.browser()).get("/setup")).status == 200
    await site.create_user("owner", role="admin")
    assert await site.auth.setup.code() is None
    assert (await (await site.browser()).get("/setup")).status == 404
