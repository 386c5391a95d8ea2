"""The API answers only what its OpenAPI document says, whatever it is sent.

schemathesis reads `/api/v1/openapi.json` from a real `medianest serve` (SQLite, the installed
plugins: Plex connected to its fakes, served from a thread of this test, and the example
plugin) and sends generated requests to every operation, as a user and as an admin, bounded in
examples and time: no answer may be a server error (5xx other than a documented 502/503) and
no status may be missing from the document. The event stream is left out (it streams until
the client leaves).
"""

from __future__ import annotations

import asyncio
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from medianest_server.auth.tokens import ApiTokenService
from medianest_server.auth.users import UserService
from medianest_server.config import load_config
from medianest_server.db import open_database

from .conftest import ServerProcess

SCHEMATHESIS = Path(sys.executable).parent / "schemathesis"


@pytest.fixture
def plex_in_a_thread() -> Iterator[Any]:
    """The Plex fakes, served by an event loop of their own (the test itself is synchronous,
    and the server under test is another process)."""
    testing = pytest.importorskip("medianest_plex.testing")
    loop = asyncio.new_event_loop()
    started = threading.Event()
    servers: list[TestServer] = []
    box: dict[str, Any] = {}

    async def serve(app: web.Application) -> TestServer:
        server = TestServer(app, host="127.0.0.1")
        await server.start_server()
        servers.append(server)
        return server

    async def start() -> None:
        box["plex"] = await testing.start_fake_plex(serve)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=30)
    started.wait(30)
    yield box["plex"]

    async def stop() -> None:
        for server in servers:
            await server.close()

    asyncio.run_coroutine_threadsafe(stop(), loop).result(timeout=30)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


def _tokens(config_path: Path) -> dict[str, str]:
    """An admin and a user, each with a personal API token, in the server's database."""

    async def create() -> dict[str, str]:
        config = load_config(config_path, environ={})
        db = open_database(config.database.url, base_dir=config.base_dir)
        await db.connect()
        try:
            users, tokens = UserService(db), ApiTokenService(db)
            made = {}
            for role in ("admin", "user"):
                user = await users.create(f"fuzz-{role}", role=role)  # type: ignore[arg-type]
                made[role], _ = await tokens.create(user.id, "schemathesis")
            return made
        finally:
            await db.close()

    return asyncio.run(create())


@pytest.mark.slow
@pytest.mark.parametrize("role", ["user", "admin"])
def test_every_answer_is_documented_and_none_is_a_server_error(
    role: str,
    write_config: Callable[..., Path],
    start_server: Callable[..., ServerProcess],
    plex_in_a_thread: Any,
) -> None:
    if not SCHEMATHESIS.exists():
        pytest.fail("schemathesis is not installed (./dev test installs it from uv.lock)")
    # the per-user API limit would answer most generated requests with 429 (documented, but
    # then nothing else is tested); the sign-in limit stays on
    plex = plex_in_a_thread
    settings = {"url": plex.server_url, "token": plex.owner.token, "plex_tv_url": plex.tv_url}
    path = write_config(auth={"api_requests_per_minute": 0}, plugins={"plex": settings})
    migrated = subprocess.run(
        [sys.executable, "-m", "medianest_server", "migrate", "--config", str(path)],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert migrated.returncode == 0, migrated.stderr
    token = _tokens(path)[role]
    server = start_server(path)
    server.wait_ready()
    result = subprocess.run(
        [
            str(SCHEMATHESIS),
            "run",
            f"{server.url}/api/v1/openapi.json",
            "--header",
            f"Authorization: Bearer {token}",
            "--checks",
            "not_a_server_error,status_code_conformance",
            "--exclude-path",
            "/api/v1/events",
            "--max-examples",
            "12",
            "--generation-deterministic",
            "--request-timeout",
            "10",
            "--workers",
            "1",
            "--no-color",
            "--warnings",
            "off",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
        cwd=path.parent,
    )
    assert result.returncode == 0, result.stdout[-8000:] + result.stderr[-2000:]
    assert server.stop() == 0
