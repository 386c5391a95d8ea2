"""Security headers, proxies, request size limits and refusing bad input without a trace."""

from __future__ import annotations

import re
from typing import Any

from aiohttp.test_utils import TestClient

from medianest_server.web.access import ROUTE_TABLE

from .conftest import USER_PASSWORD, MakeSite, Site, bearer, csrf_of, hidden_csrf


def _csp(header: str) -> dict[str, list[str]]:
    directives: dict[str, list[str]] = {}
    for part in header.split(";"):
        words = part.split()
        if words:
            directives[words[0].lower()] = words[1:]
    return directives


def _assert_security_headers(response: Any, what: str) -> None:
    csp = _csp(response.headers.get("Content-Security-Policy", ""))
    script_src = csp.get("script-src", csp.get("default-src"))
    assert script_src is not None, what
    assert "'unsafe-inline'" not in script_src and "'unsafe-eval'" not in script_src, what
    assert csp.get("frame-ancestors") == ["'none'"], what
    assert response.headers.get("X-Content-Type-Options") == "nosniff", what
    assert response.headers.get("Referrer-Policy") in (
        "no-referrer",
        "same-origin",
        "strict-origin",
        "strict-origin-when-cross-origin",
    ), what


async def _admin_token(site: Site) -> tuple[Any, str]:
    admin = await site.auth.users.create("admin", role="admin")
    raw, _ = await site.auth.api_tokens.create(admin.id, "test")
    return admin, raw


async def test_security_headers_on_pages_json_errors_and_redirects(site: Site) -> None:
    _, raw = await _admin_token(site)
    client = await site.browser()
    login = await client.get("/login")
    assert login.status == 200 and "text/html" in login.headers["Content-Type"]
    text = await login.text()
    assert "static/medianest.css" in text
    stylesheet = re.search(r'href="(/static/[^"]+)"', text)
    assert stylesheet is not None
    cases = {
        "page": login,
        "json": await client.get("/api/v1/me", headers=bearer(raw)),
        "api 404": await client.get("/api/v1/no-such-thing"),
        "page 404": await client.get("/no/such/page"),
        "redirect": await client.get("/", allow_redirects=False),
        "401": await client.get("/api/v1/me"),
        "405": await client.delete("/health/live"),
        "static": await client.get(stylesheet.group(1)),
    }
    expected = {"page": 200, "json": 200, "api 404": 404, "page 404": 404, "redirect": 302}
    expected |= {"401": 401, "405": 405, "static": 200}
    for what, response in cases.items():
        assert response.status == expected[what], what
        _assert_security_headers(response, what)


async def test_pages_carry_no_inline_script(site: Site) -> None:
    """What the CSP allows is what the pages need: every page an admin can open, and the
    sign-in page, has script only from files and no inline handlers."""
    _, admin = await site.admin()
    pages = sorted(
        info.path
        for info in site.app[ROUTE_TABLE].values()
        if info.kind == "page" and info.method == "GET" and "{" not in info.path
    )
    assert "/" in pages and "/login" in pages
    visitor = await site.browser()
    for client, path in [(admin, p) for p in pages] + [(visitor, "/login")]:
        response = await client.get(path)
        if "text/html" not in response.headers.get("Content-Type", ""):
            continue
        text = await response.text()
        for tag in re.findall(r"<[a-z][^>]*>", text, flags=re.IGNORECASE):
            if tag.lower().startswith("<script"):
                assert "src=" in tag, (path, tag)  # code only from files, never inline
            assert not re.search(r"\son[a-z]+\s*=", tag, flags=re.IGNORECASE), (path, tag)
            assert "javascript:" not in tag.lower(), (path, tag)


async def _session_ips(site: Site, client: TestClient, headers: dict[str, str]) -> set[str]:
    tokens = await client.post(
        "/api/v1/auth/token", json={"username": "alice", "password": USER_PASSWORD}, headers=headers
    )
    assert tokens.status == 200
    access = (await tokens.json())["access_token"]
    sessions = await client.get("/api/v1/me/sessions", headers=bearer(access))
    return {s["ip"] for s in (await sessions.json())["sessions"]}


async def test_forwarded_for_from_an_untrusted_peer_is_ignored(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser()
    ips = await _session_ips(site, client, {"X-Forwarded-For": "203.0.113.5"})
    assert ips == {"127.0.0.1"}
    entries, _ = await site.auth.audit.search(action="auth.login")
    assert [e.ip for e in entries] == ["127.0.0.1"]


async def test_forwarded_for_from_a_trusted_proxy_names_the_client(make_site: MakeSite) -> None:
    site = await make_site(server={"trusted_proxies": ["127.0.0.1"]})
    await site.create_user("alice")
    client = await site.browser()
    # the left-most hop is whatever the client wrote; the proxy appended the real address
    ips = await _session_ips(site, client, {"X-Forwarded-For": "10.9.9.9, 203.0.113.5"})
    assert ips == {"203.0.113.5"}
    entries, _ = await site.auth.audit.search(action="auth.login")
    assert [e.ip for e in entries] == ["203.0.113.5"]


async def test_request_bodies_over_the_limit_get_413(make_site: MakeSite) -> None:
    site = await make_site(server={"max_request_body_mb": 0.01})  # about 10 KB
    await site.create_user("alice")
    client = await site.browser()
    padding = "x" * 20_000
    big_json = await client.post(
        "/api/v1/auth/token", json={"username": "alice", "password": padding}
    )
    assert big_json.status == 413
    assert (await big_json.json())["error"]["code"] == "request_too_large"

    token = hidden_csrf(await (await client.get("/login")).text())
    big_form = await client.post(
        "/login",
        data={"csrf_token": token, "username": "alice", "password": padding},
        allow_redirects=False,
    )
    assert big_form.status == 413
    assert "medianest_session" not in big_form.cookies

    browser = await site.sign_in("alice", USER_PASSWORD)  # a small body is fine
    big_cookie_post = await browser.post(
        "/api/v1/me/tokens",
        data={"csrf_token": await csrf_of(browser), "name": padding},
    )
    assert big_cookie_post.status == 413
    assert await site.count("api_tokens") == 0


async def _details(response: Any) -> dict[str, Any]:
    assert response.status == 400, (response.status, await response.text())
    body = await response.json()
    assert body["error"]["code"] == "invalid_input"
    details: dict[str, Any] = body["error"]["details"]
    return details


async def test_bad_json_bodies_get_400_naming_the_field_and_write_nothing(site: Site) -> None:
    _, raw = await _admin_token(site)
    client = await site.browser()
    auth = bearer(raw)
    good = {"username": "newbie", "password": "long enough password"}

    async def create(**kwargs: Any) -> dict[str, Any]:
        kwargs["headers"] = {**auth, **kwargs.get("headers", {})}
        return await _details(await client.post("/api/v1/admin/users", **kwargs))

    assert "_body" in await create(
        data='{"username": "newbie", ', headers={**auth, "Content-Type": "application/json"}
    )
    assert "_body" in await create(json=[good])
    assert {"username", "password"} <= set(await create(json={}))
    assert {"username", "password"} <= set(await create(json={"username": 5, "password": ["x"]}))
    assert "username" in await create(json={**good, "username": "u" * 65})
    assert "username" in await create(json={**good, "username": "no spaces allowed"})
    assert "display_name" in await create(json={**good, "display_name": "n" * 101})
    assert "email" in await create(json={**good, "email": "not-an-email"})
    assert "role" in await create(json={**good, "role": "root"})
    assert "password" in await create(json={**good, "password": "short"})
    assert "is_admin" in await create(json={**good, "is_admin": True})
    assert await site.count("users") == 1

    async def token(body: Any) -> dict[str, Any]:
        return await _details(await client.post("/api/v1/me/tokens", headers=auth, json=body))

    assert "name" in await token({})
    assert "name" in await token({"name": "n" * 101})
    assert "name" in await token({"name": 42})
    assert "name" in await token({"name": "   "})
    assert "scopes" in await token({"name": "ok", "scopes": ["all"]})
    assert await site.count("api_tokens") == 1  # only the admin's own

    admin_id = (await (await client.get("/api/v1/me", headers=auth)).json())["id"]
    other = await site.auth.users.create("other")
    url = f"/api/v1/admin/users/{other.id}"
    assert "role" in await _details(await client.patch(url, headers=auth, json={"role": "root"}))
    assert "disabled" in await _details(
        await client.patch(url, headers=auth, json={"disabled": [True]})
    )
    assert "password" in await _details(
        await client.patch(url, headers=auth, json={"password": "x"})
    )
    assert (await client.patch(url, headers=auth, json={})).status == 400
    assert (await site.auth.users.details(other.id)).user.role == "user"
    assert admin_id != other.id

    query = "/api/v1/admin/users"
    assert "per_page" in await _details(await client.get(f"{query}?per_page=0", headers=auth))
    assert "page" in await _details(await client.get(f"{query}?page=first", headers=auth))
    assert "q" in await _details(await client.get(f"{query}?q={'q' * 101}", headers=auth))

    tokens = "/api/v1/auth/token"
    assert "password" in await _details(await client.post(tokens, json={"username": "admin"}))
    assert "username" in await _details(
        await client.post(tokens, json={"username": "u" * 65, "password": "x"})
    )


async def test_deeply_nested_json_is_a_400_not_a_server_error(site: Site) -> None:
    client = await site.browser()
    response = await client.post(
        "/api/v1/auth/token",
        data="[" * 100_000 + "]" * 100_000,
        headers={"Content-Type": "application/json"},
    )
    assert "_body" in await _details(response)


async def test_a_nul_character_in_a_username_is_refused_not_a_server_error(site: Site) -> None:
    _, raw = await _admin_token(site)
    client = await site.browser()
    sign_in = await client.post(
        "/api/v1/auth/token", json={"username": "ad\u0000min", "password": "whatever it is"}
    )
    search = await client.get("/api/v1/admin/users?q=a%00b", headers=bearer(raw))
    assert (sign_in.status in (400, 401), search.status in (200, 400)) == (True, True), (
        sign_in.status,
        search.status,
    )


async def test_bad_form_input_is_a_400_page_naming_the_field(site: Site) -> None:
    code = await site.auth.setup.code()
    client = await site.browser()
    token = hidden_csrf(await (await client.get("/setup")).text())
    response = await client.post(
        "/setup",
        data={"csrf_token": token, "code": code, "username": "u" * 65, "password": "long password"},
    )
    assert response.status == 400
    assert "username" in await response.text()
    assert await site.count("users") == 0
    assert await site.auth.setup.code() == code  # the code was not used up

    await site.create_user("alice")
    login = await site.browser()
    token = hidden_csrf(await (await login.get("/login")).text())
    missing = await login.post("/login", data={"csrf_token": token, "username": "alice"})
    assert missing.status == 400
    assert "password" in await missing.text()
    assert await site.count("sessions") == 0


async def test_a_page_may_loosen_only_the_opener_policy_and_only_for_popups(
    aiohttp_client: Any,
) -> None:
    """The security middleware alone: a handler's Cross-Origin-Opener-Policy survives when it
    is one of the allowed values; any other value, and any other header it sets, is replaced."""
    from aiohttp import web

    from medianest_server.web.security import HEADERS, security_headers

    async def popup_page(request: web.Request) -> web.Response:
        return web.Response(headers={"Cross-Origin-Opener-Policy": "same-origin-allow-popups"})

    async def sneaky(request: web.Request) -> web.Response:
        return web.Response(
            headers={
                "Cross-Origin-Opener-Policy": "unsafe-none",
                "Content-Security-Policy": "script-src *",
            }
        )

    app = web.Application(middlewares=[security_headers(https=False)])
    app.router.add_get("/popup", popup_page)
    app.router.add_get("/sneaky", sneaky)
    client = await aiohttp_client(app)
    popup = await client.get("/popup")
    assert popup.headers["Cross-Origin-Opener-Policy"] == "same-origin-allow-popups"
    other = await client.get("/sneaky")
    assert other.headers["Cross-Origin-Opener-Policy"] == "same-origin"
    assert other.headers["Content-Security-Policy"] == HEADERS["Content-Security-Policy"]


LONE_SURROGATE = '{"username": "\\ud800", "password": "x\\udfff"}'


async def test_a_lone_surrogate_in_json_is_a_400_naming_the_field(site: Site) -> None:
    """`"\\ud800"` is valid JSON but not Unicode text: no database can store or compare it.
    It used to answer 500 (and skip counting the failed sign-in)."""
    client = await site.browser()
    for path, body in (
        ("/api/v1/auth/token", LONE_SURROGATE),
        ("/api/v1/auth/refresh", '{"refresh_token": "abc\\ud800"}'),
    ):
        response = await client.post(path, data=body, headers={"Content-Type": "application/json"})
        assert response.status == 400, (path, await response.text())
        error = (await response.json())["error"]
        assert error["code"] == "invalid_input"
        assert set(error["details"]) <= {"username", "password", "refresh_token"}


async def test_ids_past_what_a_database_holds_are_404_not_500(site: Site) -> None:
    """2**63 and beyond overflowed SQLite's integer binding (500); PostgreSQL said 404."""
    _, token = await _admin_token(site)
    client = await site.browser()
    huge = "99999999999999999999"
    for method, path in (
        ("POST", f"/api/v1/notifications/{huge}/read"),
        ("DELETE", f"/api/v1/me/tokens/{huge}"),
        ("GET", f"/api/v1/admin/users/{huge}"),
        ("GET", f"/api/v1/admin/users/{2**63}"),
        ("DELETE", f"/api/v1/admin/users/{huge}"),
    ):
        response = await client.request(method, path, headers=bearer(token))
        assert response.status == 404, (method, path, response.status)
    unicode_digits = await client.get("/api/v1/admin/users/\u0661\u0662", headers=bearer(token))
    assert unicode_digits.status == 404


async def test_answers_with_secrets_and_signed_in_pages_are_never_cached(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser()
    issued = await client.post(
        "/api/v1/auth/token", json={"username": "alice", "password": USER_PASSWORD}
    )
    assert issued.status == 200 and issued.headers["Cache-Control"] == "no-store"
    access = (await issued.json())["access_token"]
    created = await client.post("/api/v1/me/tokens", json={"name": "ha"}, headers=bearer(access))
    assert created.status in (200, 201) and created.headers["Cache-Control"] == "no-store"
    browser = await site.sign_in("alice", USER_PASSWORD)
    for path in ("/", "/profile", "/notifications"):
        page = await browser.get(path)
        assert page.headers["Cache-Control"] == "no-store", path
    icon = await browser.get("/favicon.ico")
    assert icon.headers["Cache-Control"].startswith("public")


async def test_personal_tokens_end_with_a_password_change_or_a_disabled_account(
    site: Site,
) -> None:
    alice = await site.create_user("alice")
    first, _ = await site.auth.api_tokens.create(alice.id, "script")
    client = await site.browser()
    assert (await client.get("/api/v1/me", headers=bearer(first))).status == 200
    access = (await site.tokens("alice", USER_PASSWORD))["access_token"]
    changed = await client.post(
        "/api/v1/me/password",
        json={"current_password": USER_PASSWORD, "new_password": "a new long password"},
        headers=bearer(access),
    )
    assert changed.status in (200, 204), await changed.text()
    assert (await client.get("/api/v1/me", headers=bearer(first))).status == 401

    second, _ = await site.auth.api_tokens.create(alice.id, "script again")
    _, admin_token = await _admin_token(site)
    disabled = await client.patch(
        f"/api/v1/admin/users/{alice.id}", json={"disabled": True}, headers=bearer(admin_token)
    )
    assert disabled.status == 200
    assert (await client.get("/api/v1/me", headers=bearer(second))).status == 401
    assert await site.count("api_tokens", "user_id = :u AND revoked_at IS NULL", u=alice.id) == 0
