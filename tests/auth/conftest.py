"""Fixtures for the sign-in and security tests: an assembled app on each database backend, and
helpers that act like people (set up, sign in through the real form, get tokens).

Every person gets their own `TestClient`, so their cookie jars never mix. Passwords are hashed
with Argon2id at its lowest cost (see `fast_password_hashing`) so the suite stays quick.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from argon2 import PasswordHasher

from medianest_server.app import create_app
from medianest_server.appkeys import DB
from medianest_server.auth import passwords
from medianest_server.auth.models import User
from medianest_server.auth.services import AUTH_SERVICES, AuthServices
from medianest_server.clock import ManualClock
from medianest_server.config import load_config
from medianest_server.db import Database
from medianest_server.plugins.loader import Candidate
from medianest_server.testing.plugin import end_other_connections, temporary_postgres_database

from ..conftest import _admin_connection

ADMIN_PASSWORD = "admin password 0001"
USER_PASSWORD = "user password 0002"

_CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]*)"')


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def hidden_csrf(page: str) -> str:
    """The `csrf_token` hidden field of a page's form."""
    found = _CSRF_FIELD.search(page)
    assert found is not None, "the page has no csrf_token field"
    return found.group(1)


def jwt_parts(token: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The (header, claims) of a JWT, unverified."""
    header, claims, _ = token.split(".")
    return _b64_json(header), _b64_json(claims)


def _b64_json(part: str) -> dict[str, Any]:
    value: dict[str, Any] = json.loads(base64.urlsafe_b64decode(part + "=" * (-len(part) % 4)))
    return value


def set_cookie_header(response: Any, name: str) -> str:
    """The raw Set-Cookie header for cookie `name` (attributes included)."""
    for header in response.headers.getall("Set-Cookie", []):
        if header.startswith(f"{name}="):
            return str(header)
    raise AssertionError(f"no Set-Cookie for {name}: {response.headers.getall('Set-Cookie', [])}")


@dataclass
class Site:
    """One assembled, started app and ways to act on it as different people."""

    app: web.Application
    server: TestServer
    clock: ManualClock
    new_client: Callable[..., Awaitable[TestClient]]
    _browsers: list[TestClient] = field(default_factory=list)

    @property
    def auth(self) -> AuthServices:
        return self.app[AUTH_SERVICES]

    @property
    def db(self) -> Database:
        return self.app[DB]

    async def browser(self, **kwargs: Any) -> TestClient:
        """A new client with its own cookie jar: a different person or device."""
        return await self.new_client(self.server, **kwargs)

    async def create_user(
        self, username: str, *, password: str = USER_PASSWORD, role: str = "user"
    ) -> User:
        return await self.auth.users.create(username, password=password, role=role)  # type: ignore[arg-type]

    async def sign_in(
        self,
        username: str,
        password: str,
        *,
        client: TestClient | None = None,
        headers: dict[str, str] | None = None,
    ) -> TestClient:
        """Sign in through the real /login form; the returned client carries the session cookie."""
        client = client or await self.browser()
        page = await client.get("/login", headers=headers)
        assert page.status == 200, await page.text()
        response = await client.post(
            "/login",
            data={
                "csrf_token": hidden_csrf(await page.text()),
                "username": username,
                "password": password,
            },
            headers=headers,
            allow_redirects=False,
        )
        assert response.status == 303, (response.status, await response.text())
        assert "medianest_session" in response.cookies
        return client

    async def admin(self, username: str = "admin") -> tuple[User, TestClient]:
        """An admin (created directly: setup has its own tests) signed in through the form."""
        user = await self.create_user(username, password=ADMIN_PASSWORD, role="admin")
        return user, await self.sign_in(username, ADMIN_PASSWORD)

    async def user(
        self, username: str = "alice", password: str = USER_PASSWORD
    ) -> tuple[User, TestClient]:
        user = await self.create_user(username, password=password)
        return user, await self.sign_in(username, password)

    async def tokens(self, username: str, password: str, **kwargs: Any) -> dict[str, Any]:
        """POST /api/v1/auth/token: an access token and a refresh token."""
        client = await self.browser()
        response = await client.post(
            "/api/v1/auth/token", json={"username": username, "password": password}, **kwargs
        )
        assert response.status == 200, await response.text()
        body: dict[str, Any] = await response.json()
        return body

    async def count(self, table: str, where: str = "1 = 1", **params: Any) -> int:
        value = await self.db.fetch_val(f"SELECT count(*) FROM {table} WHERE {where}", params)
        return int(value or 0)


def session_cookie(client: TestClient) -> str:
    """The value of the session cookie a client holds."""
    cookies = client.session.cookie_jar.filter_cookies(client.make_url("/"))
    return cookies["medianest_session"].value


async def csrf_of(client: TestClient) -> str:
    """The CSRF token of a signed-in browser, as the web UI gets it (GET /api/v1/me)."""
    response = await client.get("/api/v1/me")
    assert response.status == 200, await response.text()
    token: str = (await response.json())["csrf_token"]
    return token


async def me_status(client: TestClient, headers: dict[str, str] | None = None) -> int:
    response = await client.get("/api/v1/me", headers=headers)
    await response.read()
    return response.status


MakeSite = Callable[..., Awaitable[Site]]


@pytest.fixture(scope="session")
def shared_postgres_url(postgres_server: str) -> Iterator[str]:
    """One PostgreSQL database for this package's tests, emptied before each (see below).

    Creating a database costs 0.3 to 1 s on this machine, most of the run; emptying one costs
    a few milliseconds. Migrations are proven on fresh databases in tests/db.
    """
    with temporary_postgres_database(postgres_server, "medianest_auth") as url:
        yield url


def _empty_database(url: str) -> None:
    """Every table emptied and every id counter reset; the schema (and its migrations) stay."""
    connection = _admin_connection(url)
    try:
        with connection.cursor() as cursor:
            end_other_connections(cursor, url.rsplit("/", 1)[1])
            cursor.execute(
                "SELECT quote_ident(tablename) FROM pg_tables WHERE schemaname = 'public'"
                " AND tablename <> 'schema_migrations'"
            )
            tables = [row[0] for row in cursor.fetchall()]
            if tables:
                cursor.execute(f"TRUNCATE {', '.join(tables)} RESTART IDENTITY CASCADE")
    finally:
        connection.close()


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """An empty database: a new SQLite file, or the shared PostgreSQL database emptied."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/medianest.db"
    url: str = request.getfixturevalue("shared_postgres_url")
    _empty_database(url)
    return url


@pytest.fixture(autouse=True)
def fast_password_hashing(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2id with the lowest cost, so a sign-in costs ~1 ms instead of ~150 ms.

    Only the cost changes: passwords are still hashed and verified by argon2-cffi through the
    same code. The production parameters are proven by the test that asks for
    `real_password_hashing` and by bench/. Hashes made with either verify with either.
    """
    if "real_password_hashing" in request.fixturenames:
        return
    monkeypatch.setattr(
        passwords, "_HASHER", PasswordHasher(time_cost=1, memory_cost=8, parallelism=1)
    )


@pytest.fixture
def real_password_hashing() -> None:
    """Ask for this to keep the production Argon2 parameters in a test."""


@pytest.fixture
async def make_site(
    write_config: Callable[..., Path], database_url: str, aiohttp_client: Any
) -> MakeSite:
    """`await make_site(auth={...}, server={...})`: the app on this test's database backend.

    The database fixture comes before aiohttp_client so the app closes before a PostgreSQL
    database is dropped. The clock is a ManualClock starting now, moved only by
    `site.clock.advance`: session and JWT expiry and the credential cache all follow it.
    """

    async def make(*, plugins: list[Candidate] | None = None, **sections: dict[str, Any]) -> Site:
        sections = {k: dict(v) for k, v in sections.items()}
        sections.setdefault("database", {})["url"] = database_url
        config = load_config(write_config(**sections), environ={})
        clock = ManualClock(start=datetime.now(UTC))
        app = create_app(config, plugins=plugins or [], environ={}, clock=clock)
        server = TestServer(app)
        await aiohttp_client(server)  # starts the app; closed after the test
        return Site(app=app, server=server, clock=clock, new_client=aiohttp_client)

    return make


@pytest.fixture
async def site(make_site: MakeSite) -> Site:
    """The app with its default configuration."""
    return await make_site()


__all__ = [
    "ADMIN_PASSWORD",
    "USER_PASSWORD",
    "MakeSite",
    "Site",
    "bearer",
    "csrf_of",
    "hidden_csrf",
    "jwt_parts",
    "me_status",
    "session_cookie",
    "set_cookie_header",
]
