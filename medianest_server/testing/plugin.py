"""pytest fixtures for testing a MediaNest plugin against a real, assembled MediaNest.

    # test_my_plugin.py: nothing to import; the fixtures come with MediaNest
    @pytest.fixture
    def medianest_plugins():
        return ["my_plugin"]                    # entry point names to load

    @pytest.fixture
    def medianest_settings():
        return {"plugins": {"my_plugin": {"url": "http://127.0.0.1:1"}}}

    async def test_greeting(user_client):
        response = await user_client.get("/api/v1/my_plugin/greeting")
        assert response.status == 200

Fixtures: `medianest_app` (started app), `medianest_plugin` (your plugin from its side: its
ctx, webhook URLs, health checks, a widget rendered, its tasks run now, the events and
notifications it emitted), `anonymous_client`, `user_client`, `admin_client`
(signed in with personal API tokens; `.user` is who they are; the configuration is a real
`medianest.toml` in tmp_path, so settings saved by the app land there), `fake_upstream` (serve an
aiohttp app on 127.0.0.1 as a stand-in for an upstream service) and `clock` (a ManualClock the
app runs on: `clock.advance(60)`). The database is SQLite in the test's tmp_path unless
`medianest_database_url` is overridden; to run a module on both databases, as store tests
should, override it with `medianest_each_database` (SQLite, then a fresh PostgreSQL database
at MEDIANEST_TEST_POSTGRES_URL's server). `chromium`: a headless Chromium (Debian's
/usr/bin/chromium) driven by Playwright, for tests of pages in a real browser; skipped where it
is missing, a failure under MEDIANEST_REQUIRE_SERVICES=1 (CI).
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from ..app import create_app
from ..auth.models import User
from ..auth.services import AUTH_SERVICES
from ..clock import ManualClock
from ..config import Config, load_config, write_config_file
from ..plugins.loader import discover_entry_points
from .harness import PluginHarness

TEST_SECRET = "medianest-testing-secret-key-0123456789abcdef"  # noqa: S105 (tests only)
TEST_PASSWORD = "correct horse battery"  # noqa: S105 (tests only)


CHROMIUM = Path("/usr/bin/chromium")
HAVE_CHROMIUM = CHROMIUM.exists()
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
async def chromium() -> AsyncIterator[Any]:
    """A Playwright `Browser`: Debian's Chromium, headless (Playwright's own download needs
    the internet). Pages should only visit 127.0.0.1; route anything else in the test."""
    if not HAVE_CHROMIUM:
        message = "Debian's chromium is not installed (.ci/run installs it)"
        if os.environ.get("MEDIANEST_REQUIRE_SERVICES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    playwright_api = pytest.importorskip("playwright.async_api")
    async with playwright_api.async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield browser
        await browser.close()


class MediaNestClient(TestClient[web.Request, web.Application]):
    """A test client that knows who it is signed in as (`user` is None when anonymous)."""

    user: User | None = None


class FakeUpstream:
    """Starts aiohttp apps on 127.0.0.1 standing in for upstream services; stopped after."""

    def __init__(self) -> None:
        self._servers: list[TestServer] = []

    async def __call__(self, app: web.Application) -> TestServer:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        self._servers.append(server)
        return server

    async def close(self) -> None:
        for server in self._servers:
            await server.close()


@pytest.fixture
def medianest_plugins() -> list[str]:
    """Names of installed plugins (entry points in group `medianest`) to load. Override it."""
    return []


@pytest.fixture
def medianest_settings() -> dict[str, Any]:
    """Extra configuration, by section: `{"plugins": {"name": {...}}, "auth": {...}}`."""
    return {}


@pytest.fixture
def medianest_database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/medianest.db"


POSTGRES_ADMIN_URL = os.environ.get(
    "MEDIANEST_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/postgres"
)


def service_missing(what: str, error: Exception) -> None:
    """Skip when a real service is not running, or fail when CI says it must be there."""
    message = f"{what} is not reachable ({error}); start it or run .ci/run"
    if os.environ.get("MEDIANEST_REQUIRE_SERVICES") == "1":
        pytest.fail(message)
    pytest.skip(message)


def postgres_admin_connection(url: str) -> Any:
    import psycopg2  # comes with aiopg

    connection = psycopg2.connect(url, connect_timeout=3)
    connection.autocommit = True
    return connection


def end_other_connections(cursor: Any, database: str) -> None:
    """End every other session on `database` (before dropping or emptying it)."""
    cursor.execute(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (database,),
    )


@pytest.fixture(scope="session")
def medianest_postgres_server() -> str:
    """The admin URL of a reachable PostgreSQL server; skips (fails in CI) when there is none."""
    import psycopg2

    try:
        postgres_admin_connection(POSTGRES_ADMIN_URL).close()
    except psycopg2.OperationalError as exc:
        service_missing(f"PostgreSQL at {POSTGRES_ADMIN_URL}", exc)
    return POSTGRES_ADMIN_URL


@contextlib.contextmanager
def temporary_postgres_database(server_url: str, prefix: str = "medianest_test") -> Iterator[str]:
    """A new, empty database on the server at `server_url` (an admin URL), dropped after."""
    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    admin = postgres_admin_connection(server_url)
    try:
        with admin.cursor() as cursor:
            cursor.execute(f'CREATE DATABASE "{name}"')
        yield server_url.rsplit("/", 1)[0] + "/" + name
    finally:
        try:
            with admin.cursor() as cursor:
                end_other_connections(cursor, name)
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}"')
        finally:
            admin.close()


@pytest.fixture
def medianest_postgres_url(medianest_postgres_server: str) -> Iterator[str]:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    with temporary_postgres_database(medianest_postgres_server) as url:
        yield url


@pytest.fixture(params=["sqlite", "postgresql"])
def medianest_each_database(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A new SQLite file, then (a second run of the test) a fresh PostgreSQL database."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/medianest.db"
    url: str = request.getfixturevalue("medianest_postgres_url")
    return url


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock()


@pytest.fixture
def medianest_port() -> int:
    """The port the app under test listens on (free when asked), so that `[server] base_url`
    is the address the tests reach: links, return addresses and webhooks point back to it."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def medianest_config(
    tmp_path: Path,
    medianest_settings: dict[str, Any],
    medianest_database_url: str,
    medianest_port: int,
) -> Config:
    raw: dict[str, Any] = {
        "server": {
            "secret_key": TEST_SECRET,
            "data_dir": str(tmp_path / "data"),
            "port": medianest_port,
        },
        "database": {"url": medianest_database_url},
    }
    for section, values in medianest_settings.items():
        raw.setdefault(section, {}).update(values)
    # a real file, so saving settings from the admin pages (and ctx.save_settings) works
    path = tmp_path / "medianest.toml"
    write_config_file(path, raw)
    return load_config(path, environ={})


@pytest.fixture
async def medianest_app(
    medianest_config: Config, medianest_plugins: list[str], clock: ManualClock
) -> AsyncIterator[TestServer]:
    """The assembled app with the chosen plugins, started; its server is yielded."""
    wanted = set(medianest_plugins)
    candidates = [c for c in discover_entry_points() if c.name in wanted]
    missing = wanted - {c.name for c in candidates}
    if missing:
        pytest.fail(f"plugins not installed (no 'medianest' entry point): {sorted(missing)}")
    app = create_app(medianest_config, plugins=candidates, environ={}, clock=clock)
    server = TestServer(app, host="127.0.0.1", port=medianest_config.server.port)
    await server.start_server()
    yield server
    await server.close()


@pytest.fixture
async def medianest_plugin(
    medianest_app: TestServer, medianest_plugins: list[str]
) -> AsyncIterator[PluginHarness]:
    """The first plugin of `medianest_plugins`, from its author's side: `.ctx`,
    `.webhook_url(hook)`, `.check_health()`, `.render_widget(id, user)`, `.run_task(name)`,
    `.events` (what it emitted), `.emitted(type)`, `.notifications(user_id)`."""
    if not medianest_plugins:
        pytest.fail("medianest_plugins names no plugin")
    harness = PluginHarness(medianest_app.app, medianest_plugins[0])
    async with harness.capturing():
        yield harness


@pytest.fixture
async def _medianest_clients(
    medianest_app: TestServer,
) -> AsyncIterator[Callable[[str | None], Awaitable[MediaNestClient]]]:
    clients: list[MediaNestClient] = []

    async def make(role: str | None) -> MediaNestClient:
        headers = {}
        user = None
        if role is not None:
            auth = medianest_app.app[AUTH_SERVICES]
            user = await auth.users.create(
                f"{role}{len(clients)}",
                password=TEST_PASSWORD,
                role=role,  # type: ignore[arg-type]
            )
            token, _ = await auth.api_tokens.create(user.id, "tests")
            headers["Authorization"] = f"Bearer {token}"
        client = MediaNestClient(medianest_app, headers=headers)
        client.user = user
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
async def anonymous_client(
    _medianest_clients: Callable[[str | None], Awaitable[MediaNestClient]],
) -> MediaNestClient:
    return await _medianest_clients(None)


@pytest.fixture
async def admin_client(
    _medianest_clients: Callable[[str | None], Awaitable[MediaNestClient]],
) -> MediaNestClient:
    return await _medianest_clients("admin")


@pytest.fixture
async def user_client(
    _medianest_clients: Callable[[str | None], Awaitable[MediaNestClient]],
    admin_client: MediaNestClient,
) -> MediaNestClient:
    """A signed-in user (an admin exists too, as on any real install)."""
    return await _medianest_clients("user")


@pytest.fixture
async def fake_upstream() -> AsyncIterator[FakeUpstream]:
    upstream = FakeUpstream()
    yield upstream
    await upstream.close()
