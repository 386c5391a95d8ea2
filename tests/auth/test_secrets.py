"""No password, token or secret in any response (except the one that hands it out) or log line."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp.test_utils import TestClient

from ..conftest import SECRET
from .conftest import USER_PASSWORD, Site, bearer, hidden_csrf

NEW_PASSWORD = "the new secret password"


@dataclass
class Recorder:
    """Every response body a test saw, by the request that got it."""

    bodies: list[tuple[str, str]] = field(default_factory=list)

    async def call(self, client: TestClient, method: str, path: str, **kwargs: Any) -> Any:
        response = await client.request(method, path, **kwargs)
        text = await response.text()
        self.bodies.append((f"{method} {path} -> {response.status}", text))
        return response

    def containing(self, secret: str) -> list[str]:
        return [what for what, text in self.bodies if secret in text]


def _log_lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    """Each record's message and every field attached to it (what a formatter writes out)."""
    lines = []
    for record in caplog.records:
        lines.append(record.getMessage())
        lines.extend(f"{k}={v!r}" for k, v in vars(record).items() if k not in ("msg", "args"))
    return lines


async def test_passwords_tokens_and_the_secret_key_never_leak(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)  # the root logger, everything
    seen = Recorder()
    await site.create_user("alice")
    browser = await site.browser()
    page = await seen.call(browser, "GET", "/login")
    signed_in = await seen.call(
        browser,
        "POST",
        "/login",
        data={
            "csrf_token": hidden_csrf(await page.text()),
            "username": "alice",
            "password": USER_PASSWORD,
        },
        allow_redirects=False,
    )
    assert signed_in.status == 303
    me = await seen.call(browser, "GET", "/api/v1/me")
    csrf = {"X-CSRF-Token": (await me.json())["csrf_token"]}
    wrong = await seen.call(
        browser,
        "POST",
        "/api/v1/me/password",
        json={"current_password": "a wrong guess 123", "new_password": NEW_PASSWORD},
        headers=csrf,
    )
    assert wrong.status == 400

    created = await seen.call(
        browser, "POST", "/api/v1/me/tokens", json={"name": "cli"}, headers=csrf
    )
    api_token = (await created.json())["token"]
    await seen.call(browser, "GET", "/api/v1/me/tokens")
    await seen.call(await site.browser(), "GET", "/api/v1/me", headers=bearer(api_token))

    cli = await site.browser()  # an API client: no cookies
    api = await seen.call(
        cli,
        "POST",
        "/api/v1/auth/token",
        json={"username": "alice", "password": USER_PASSWORD},
    )
    pair = await api.json()
    await seen.call(cli, "GET", "/api/v1/me/sessions", headers=bearer(pair["access_token"]))
    rotated = await seen.call(
        cli, "POST", "/api/v1/auth/refresh", json={"refresh_token": pair["refresh_token"]}
    )
    new_pair = await rotated.json()

    changed = await seen.call(
        browser,
        "POST",
        "/api/v1/me/password",
        json={"current_password": USER_PASSWORD, "new_password": NEW_PASSWORD},
        headers=csrf,
    )
    assert changed.status == 200
    failed = await seen.call(
        cli,
        "POST",
        "/api/v1/auth/token",
        json={"username": "alice", "password": USER_PASSWORD},
    )
    assert failed.status == 401
    await seen.call(browser, "GET", "/api/v1/me/sessions")

    token_issuers = {"POST /api/v1/auth/token -> 200", "POST /api/v1/auth/refresh -> 200"}
    issued_once = {
        api_token: {"POST /api/v1/me/tokens -> 201"},
        pair["refresh_token"]: {"POST /api/v1/auth/token -> 200"},
        new_pair["refresh_token"]: {"POST /api/v1/auth/refresh -> 200"},
        # an access token issued in the same second for the same session is the same JWT
        pair["access_token"]: token_issuers,
        new_pair["access_token"]: token_issuers,
    }
    for secret, allowed in issued_once.items():
        assert seen.containing(secret), "the token was handed out"
        assert set(seen.containing(secret)) <= allowed
    for secret in (USER_PASSWORD, NEW_PASSWORD, "a wrong guess 123", SECRET):
        assert seen.containing(secret) == [], secret

    lines = _log_lines(caplog)
    assert len(caplog.records) > 0
    secrets = [USER_PASSWORD, NEW_PASSWORD, "a wrong guess 123", SECRET, api_token]
    secrets += [pair["access_token"], pair["refresh_token"], new_pair["refresh_token"]]
    for secret in secrets:
        leaking = [line for line in lines if secret in line]
        assert leaking == [], f"{secret[:6]}… is in the log: {leaking[:3]}"


async def test_password_hashes_stay_out_of_debug_logs(
    site: Site, caplog: pytest.LogCaptureFixture
) -> None:
    """An operator who sets log_level = "debug" to chase a problem must not get a file of
    password hashes to crack offline."""
    caplog.set_level(logging.DEBUG)
    alice = await site.create_user("alice")
    await site.sign_in("alice", USER_PASSWORD)
    stored = await site.db.fetch_val(
        "SELECT password_hash FROM users WHERE id = :id", {"id": alice.id}
    )
    assert stored.startswith("$argon2id$")
    digest = stored.rsplit("$", 1)[1]
    leaking = [line for line in _log_lines(caplog) if digest in line]
    assert leaking == [], leaking[:2]
