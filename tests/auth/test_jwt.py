"""API clients: short-lived JWT access tokens and rotating refresh tokens."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import jwt
import pytest

from medianest_server.secretbox import SecretBox

from ..conftest import SECRET
from .conftest import USER_PASSWORD, Site, bearer, jwt_parts, me_status


def _b64(value: dict[str, Any]) -> str:
    raw = json.dumps(value, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


async def _refresh(site: Site, refresh_token: str) -> Any:
    client = await site.browser()
    return await client.post("/api/v1/auth/refresh", json={"refresh_token": refresh_token})


async def test_token_endpoint_gives_an_access_and_a_refresh_token(site: Site) -> None:
    await site.create_user("alice")
    body = await site.tokens("alice", USER_PASSWORD)
    assert set(body) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert body["token_type"] == "Bearer"
    assert 0 < body["expires_in"] <= 3600
    header, claims = jwt_parts(body["access_token"])
    assert header["alg"] == "HS256"
    assert header["kid"] == site.auth.access_tokens.kid
    assert claims["exp"] - claims["iat"] == body["expires_in"]

    me = await (await site.browser()).get("/api/v1/me", headers=bearer(body["access_token"]))
    assert me.status == 200
    assert (await me.json())["username"] == "alice"
    assert (await me.json())["auth"] == "jwt"


async def test_forged_or_expired_access_tokens_are_refused(site: Site) -> None:
    await site.create_user("alice")
    good = (await site.tokens("alice", USER_PASSWORD))["access_token"]
    client = await site.browser()
    assert await me_status(client, bearer(good)) == 200
    _, claims = jwt_parts(good)
    key = SecretBox(SECRET).derive_key("jwt signing v1")
    kid = site.auth.access_tokens.kid
    now = int(time.time())

    alg_none = f"{_b64({'alg': 'none', 'typ': 'JWT', 'kid': kid})}.{_b64(claims)}."
    wrong_key = jwt.encode(claims, b"k" * 32, algorithm="HS256", headers={"kid": kid})
    tampered_claims = {**claims, "sub": str(int(claims["sub"]) + 1)}
    tampered = ".".join([good.split(".")[0], _b64(tampered_claims), good.split(".")[2]])
    expired = jwt.encode(
        {**claims, "iat": now - 3600, "exp": now - 60},
        key,
        algorithm="HS256",
        headers={"kid": kid},
    )
    other_kid = jwt.encode(claims, key, algorithm="HS256", headers={"kid": "0123456789abcdef"})
    hs512 = jwt.encode(claims, key + key, algorithm="HS512", headers={"kid": kid})

    # the control: the same claims under the app's key and kid are accepted
    resigned = jwt.encode(claims, key, algorithm="HS256", headers={"kid": kid})
    assert await me_status(client, bearer(resigned)) == 200

    for name, token in {
        "alg none": alg_none,
        "wrong signature": wrong_key,
        "tampered claims": tampered,
        "expired": expired,
        "another key id": other_kid,
        "another algorithm": hs512,
        "garbage": "not.a.jwt",
    }.items():
        response = await client.get("/api/v1/me", headers=bearer(token))
        assert response.status == 401, name
        assert (await response.json())["error"]["code"] == "unauthorized", name


async def test_refresh_gives_a_new_pair_and_the_old_refresh_token_dies(site: Site) -> None:
    await site.create_user("alice")
    first = await site.tokens("alice", USER_PASSWORD)
    response = await _refresh(site, first["refresh_token"])
    assert response.status == 200
    second = await response.json()
    assert set(second) == {"access_token", "refresh_token", "token_type", "expires_in"}
    assert second["refresh_token"] != first["refresh_token"]
    assert await me_status(await site.browser(), bearer(second["access_token"])) == 200
    third = await _refresh(site, second["refresh_token"])
    assert third.status == 200  # the newest refresh token keeps working

    assert (await _refresh(site, first["refresh_token"])).status == 401


async def test_presenting_a_refresh_token_twice_ends_the_whole_session(site: Site) -> None:
    await site.create_user("alice")
    first = await site.tokens("alice", USER_PASSWORD)
    rotated = await (await _refresh(site, first["refresh_token"])).json()
    latest_access = rotated["access_token"]
    client = await site.browser()
    assert await me_status(client, bearer(latest_access)) == 200

    replay = await _refresh(site, first["refresh_token"])  # a thief replays the old one
    assert replay.status == 401
    assert await me_status(client, bearer(latest_access)) == 401
    assert (await _refresh(site, rotated["refresh_token"])).status == 401
    assert await site.count("sessions", "revoked_at IS NULL") == 0


async def test_malformed_refresh_tokens_are_refused(site: Site) -> None:
    await site.create_user("alice")
    tokens = await site.tokens("alice", USER_PASSWORD)
    for value in ("", "nodot", "a.b", tokens["access_token"][:500]):
        response = await _refresh(site, value)
        assert response.status in (400, 401), value
    assert (await _refresh(site, tokens["refresh_token"])).status == 200


async def test_signing_out_an_api_client_ends_its_access_and_refresh_tokens(site: Site) -> None:
    await site.create_user("alice")
    tokens = await site.tokens("alice", USER_PASSWORD)
    client = await site.browser()
    out = await client.post("/api/v1/auth/logout", headers=bearer(tokens["access_token"]))
    assert out.status == 200
    assert await me_status(client, bearer(tokens["access_token"])) == 401
    assert (await _refresh(site, tokens["refresh_token"])).status == 401


async def test_the_same_refresh_token_sent_twice_at_once_is_not_honoured_twice(
    site: Site,
) -> None:
    """Copies of one refresh token sent together (a thief racing the real client): at most one
    may get a new token pair, or reuse detection is beaten by sending them at the same time."""
    await site.create_user("alice")
    tokens = await site.tokens("alice", USER_PASSWORD)
    clients = [await site.browser() for _ in range(4)]
    body = {"refresh_token": tokens["refresh_token"]}
    answers = await asyncio.gather(
        *(client.post("/api/v1/auth/refresh", json=body) for client in clients)
    )
    assert sorted(a.status for a in answers) == [200, 401, 401, 401]


async def test_a_made_up_refresh_token_for_a_real_session_does_not_end_it(site: Site) -> None:
    """Only a refresh token that was really issued counts as reuse. The session id is no secret
    (it is the `sid` of every access token, which may end up in a proxy log once expired), so a
    made-up secret beside it must be refused without signing the owner out."""
    await site.create_user("alice")
    tokens = await site.tokens("alice", USER_PASSWORD)
    _, claims = jwt_parts(tokens["access_token"])
    forged = await _refresh(site, f"{claims['sid']}.made-up-secret")
    assert forged.status == 401
    assert await me_status(await site.browser(), bearer(tokens["access_token"])) == 200
    assert (await _refresh(site, tokens["refresh_token"])).status == 200


async def test_an_access_token_expires_on_the_servers_clock(site: Site) -> None:
    await site.create_user("alice")
    access = (await site.tokens("alice", USER_PASSWORD))["access_token"]
    _, claims = jwt_parts(access)
    client = await site.browser()
    site.clock.advance(claims["exp"] - claims["iat"] - 1)
    assert await me_status(client, bearer(access)) == 200
    site.clock.advance(1)
    response = await client.get("/api/v1/me", headers=bearer(access))
    assert response.status == 401
    assert "expired" in (await response.json())["error"]["message"]


async def test_an_access_token_whose_expiry_is_not_a_number_is_refused(site: Site) -> None:
    await site.create_user("alice")
    _, claims = jwt_parts((await site.tokens("alice", USER_PASSWORD))["access_token"])
    key = SecretBox(SECRET).derive_key("jwt signing v1")
    kid = site.auth.access_tokens.kid
    for exp in ("9999999999", True, None):
        token = jwt.encode({**claims, "exp": exp}, key, algorithm="HS256", headers={"kid": kid})
        assert await me_status(await site.browser(), bearer(token)) == 401, exp


async def test_verified_tokens_are_remembered_within_a_bound(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A token seen before skips the signature check (same string) but never the expiry; the
    memory of them is bounded."""
    from medianest_server.auth import tokens

    monkeypatch.setattr(tokens, "VERIFIED_TOKENS", 2)
    await site.create_user("alice")
    issued = [(await site.tokens("alice", USER_PASSWORD))["access_token"] for _ in range(3)]
    client = await site.browser()
    for token in issued:
        assert await me_status(client, bearer(token)) == 200
    assert len(site.auth.access_tokens._verified) == 2
    assert await me_status(client, bearer(issued[0])) == 200  # verified again, not trusted
