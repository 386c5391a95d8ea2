"""Rate limits: failed sign-ins per account and per address, and API requests per user."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from medianest_server.errors import Conflict

from .conftest import USER_PASSWORD, MakeSite, Site, bearer, hidden_csrf

PROXIED = {"server": {"trusted_proxies": ["127.0.0.1"]}}


def _from(address: str) -> dict[str, str]:
    return {"X-Forwarded-For": address}


async def _token(client: TestClient, username: str, password: str, address: str) -> Any:
    return await client.post(
        "/api/v1/auth/token",
        json={"username": username, "password": password},
        headers=_from(address),
    )


def _assert_limited(response: Any, *, at_least: int) -> None:
    assert response.status == 429
    assert int(response.headers["Retry-After"]) >= at_least
    assert response.headers["X-RateLimit-Limit"] == "5"
    assert response.headers["X-RateLimit-Remaining"] == "0"
    assert int(response.headers["X-RateLimit-Reset"]) >= at_least


async def test_five_wrong_passwords_block_the_account_then_it_recovers(
    make_site: MakeSite,
) -> None:
    site = await make_site(**PROXIED)
    await site.create_user("alice")
    client = await site.browser()
    for _ in range(5):
        wrong = await _token(client, "alice", "wrong password", "203.0.113.1")
        assert wrong.status == 401
    # the right password, even from another address, is refused at once
    blocked = await _token(client, "alice", USER_PASSWORD, "198.51.100.2")
    _assert_limited(blocked, at_least=14 * 60)
    assert (await blocked.json())["error"]["code"] == "rate_limited"
    assert "access_token" not in await blocked.text()

    site.clock.advance(14 * 60)
    still = await _token(client, "alice", USER_PASSWORD, "198.51.100.2")
    assert still.status == 429
    site.clock.advance(60 + 1)
    recovered = await _token(client, "alice", USER_PASSWORD, "198.51.100.2")
    assert recovered.status == 200

    # tripping it again blocks for longer (the delay grows)
    for _ in range(5):
        assert (await _token(client, "alice", "wrong again", "203.0.113.1")).status == 401
    _assert_limited(await _token(client, "alice", USER_PASSWORD, "198.51.100.2"), at_least=29 * 60)


async def test_the_login_form_is_blocked_the_same_way(site: Site) -> None:
    await site.create_user("alice")
    client = await site.browser()
    token = hidden_csrf(await (await client.get("/login")).text())
    for _ in range(5):
        wrong = await client.post(
            "/login",
            data={"csrf_token": token, "username": "alice", "password": "wrong password"},
        )
        assert wrong.status == 401
    blocked = await client.post(
        "/login",
        data={"csrf_token": token, "username": "alice", "password": USER_PASSWORD},
        allow_redirects=False,
    )
    _assert_limited(blocked, at_least=14 * 60)
    assert "text/html" in blocked.headers["Content-Type"]
    assert "too many failed sign-ins" in await blocked.text()
    assert "medianest_session" not in blocked.cookies

    site.clock.advance(15 * 60 + 1)
    ok = await client.post(
        "/login",
        data={"csrf_token": token, "username": "alice", "password": USER_PASSWORD},
        allow_redirects=False,
    )
    assert ok.status == 303
    assert "medianest_session" in ok.cookies


async def test_one_address_trying_many_usernames_is_blocked(make_site: MakeSite) -> None:
    site = await make_site(**PROXIED)
    await site.create_user("alice")
    client = await site.browser()
    for name in ("root", "admin", "bob", "carol", "dave"):
        assert (await _token(client, name, "guess", "203.0.113.9")).status == 401
    blocked = await _token(client, "alice", USER_PASSWORD, "203.0.113.9")
    _assert_limited(blocked, at_least=14 * 60)
    # alice herself, from her own address, is not affected
    assert (await _token(client, "alice", USER_PASSWORD, "198.51.100.20")).status == 200


async def test_api_requests_over_the_per_minute_limit_get_429(make_site: MakeSite) -> None:
    site = await make_site(auth={"api_requests_per_minute": 5})
    alice = await site.create_user("alice")
    raw, _ = await site.auth.api_tokens.create(alice.id, "script")
    client = await site.browser()
    remaining = []
    for _ in range(5):
        response = await client.get("/api/v1/me", headers=bearer(raw))
        assert response.status == 200
        assert response.headers["X-RateLimit-Limit"] == "5"
        assert 0 < int(response.headers["X-RateLimit-Reset"]) <= 60
        remaining.append(int(response.headers["X-RateLimit-Remaining"]))
    assert remaining == [4, 3, 2, 1, 0]
    over = await client.get("/api/v1/me", headers=bearer(raw))
    assert over.status == 429
    assert (await over.json())["error"]["code"] == "rate_limited"
    assert 1 <= int(over.headers["Retry-After"]) <= 60
    assert over.headers["X-RateLimit-Remaining"] == "0"
    # pages are not API requests, and another user has a budget of their own
    assert (await client.get("/", headers=bearer(raw))).status != 429
    bob = await site.create_user("bob")
    bobs, _ = await site.auth.api_tokens.create(bob.id, "script")
    assert (await client.get("/api/v1/me", headers=bearer(bobs))).status == 200

    site.clock.advance(60)
    assert (await client.get("/api/v1/me", headers=bearer(raw))).status == 200


async def test_api_limit_zero_turns_it_off(make_site: MakeSite) -> None:
    site = await make_site(auth={"api_requests_per_minute": 0})
    alice = await site.create_user("alice")
    raw, _ = await site.auth.api_tokens.create(alice.id, "script")
    client = await site.browser()
    for _ in range(40):
        response = await client.get("/api/v1/me", headers=bearer(raw))
        assert response.status == 200
        assert "X-RateLimit-Limit" not in response.headers


async def test_the_sign_in_limit_holds_across_instances_sharing_redis(
    make_site: MakeSite, redis_url: str
) -> None:
    """Two app instances behind one proxy, sharing the database and Redis: failures counted by
    one instance block sign-in on the other."""
    # Redis outlives the test: a name and an address of this run only, removed at the end
    run = uuid.uuid4()
    username, address = f"alice-{run.hex[:10]}", f"10.{run.bytes[0]}.{run.bytes[1]}.{run.bytes[2]}"
    shared = {"redis": {"url": redis_url}, **PROXIED}
    first = await make_site(**shared)
    second = await make_site(**shared)
    try:
        await first.create_user(username)
        one, other = await first.browser(), await second.browser()
        for _ in range(5):
            assert (await _token(one, username, "wrong password", address)).status == 401
        _assert_limited(await _token(other, username, USER_PASSWORD, address), at_least=14 * 60)
    finally:
        for key in (f"login:account:{username}", f"login:ip:{address}"):
            for suffix in ("", ":block", ":trips"):
                await first.auth.limiter.reset(key + suffix)


@pytest.mark.parametrize("shared", [False, True], ids=["in-process", "redis"])
async def test_a_burst_of_parallel_guesses_gets_only_five_evaluated(
    make_site: MakeSite, real_password_hashing: None, shared: bool, request: Any
) -> None:
    """100 guesses at once for one account from one address (real Argon2, ~150 ms each):
    the attempt is counted before the password is checked, so 5 are evaluated and 95 get 429
    at once; the account is then blocked, the right password included. (Before: all 100
    were evaluated, and a right one among them signed in.)"""
    run = uuid.uuid4()
    username = f"alice-{run.hex[:10]}"
    address = f"10.{run.bytes[0]}.{run.bytes[1]}.{run.bytes[2]}"
    sections: dict[str, Any] = dict(PROXIED)
    if shared:
        sections["redis"] = {"url": request.getfixturevalue("redis_url")}
    site = await make_site(**sections)
    try:
        await site.create_user(username)
        client = await site.browser()
        guesses = [_token(client, username, f"wrong {i}", address) for i in range(100)]
        statuses = Counter(a.status for a in await asyncio.gather(*guesses))
        assert statuses == {429: 95, 401: 5}, statuses
        _assert_limited(await _token(client, username, USER_PASSWORD, address), at_least=14 * 60)
    finally:
        for key in (f"login:account:{username}", f"login:ip:{address}"):
            for suffix in ("", ":block", ":trips"):
                await site.auth.limiter.reset(key + suffix)


async def test_parallel_wrong_current_passwords_are_limited_too(
    site: Site, real_password_hashing: None
) -> None:
    await site.create_user("carol")
    access = (await site.tokens("carol", USER_PASSWORD))["access_token"]
    client = await site.browser()
    attempts = [
        client.post(
            "/api/v1/me/password",
            json={"current_password": f"wrong {i}", "new_password": "a brand new password"},
            headers=bearer(access),
        )
        for i in range(30)
    ]
    statuses = Counter(a.status for a in await asyncio.gather(*attempts))
    assert statuses == {429: 25, 400: 5}, statuses


async def test_parallel_wrong_setup_codes_are_limited_too(site: Site) -> None:
    client = await site.browser()
    page = await (await client.get("/setup")).text()
    csrf = hidden_csrf(page)
    attempts = [
        client.post(
            "/setup",
            data={
                "csrf_token": csrf,
                "code": f"WRNG-CODE-{i:04d}-XXXX",
                "username": "owner",
                "password": "a long admin password",
            },
        )
        for i in range(20)
    ]
    statuses = Counter(a.status for a in await asyncio.gather(*attempts))
    assert statuses == {429: 15, 400: 5}, statuses
    assert await site.count("users") == 0


FULL_WIDTH_TIKI = "\uff54\uff49\uff4b\uff49"  # tiki in full-width letters


async def test_usernames_share_one_normal_form_for_sign_in_limits_and_new_accounts(
    make_site: MakeSite,
) -> None:
    """`tİki` is not `tiki` (PostgreSQL's lower() folds İ to i; MediaNest compares one normal
    form in Python), `TIKI` is, and its failures count against the same budget."""
    site = await make_site(**PROXIED)
    await site.create_user("tiki")
    client = await site.browser()
    dotted = await _token(client, "tİki", USER_PASSWORD, "203.0.113.9")
    assert dotted.status == 401  # not tiki's account, on SQLite and PostgreSQL alike
    for spelling in ("TIKI", "Tiki", " tiki ", FULL_WIDTH_TIKI, "tiki"):
        wrong = await _token(client, spelling, "wrong password", f"203.0.113.{len(spelling)}")
        assert wrong.status in (401, 429)
    _assert_limited(await _token(client, "tiki", USER_PASSWORD, "198.51.100.7"), at_least=60)
    for taken in ("TIKI", FULL_WIDTH_TIKI):
        with pytest.raises(Conflict):
            await site.auth.users.create(taken, password=USER_PASSWORD)
