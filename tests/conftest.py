"""Shared fixtures: a config written to disk, and an assembled app on a real database."""

from __future__ import annotations

import asyncio
import inspect
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
import tomli_w
from redis.exceptions import RedisError

from medianest_server.config import Config, default_document, load_config
from medianest_server.db import (
    CORE_MIGRATIONS,
    Database,
    apply_migrations,
    load_migrations,
    open_database,
)
from medianest_server.testing.plugin import (
    postgres_admin_connection,
    service_missing,
)

SECRET = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"


async def eventually(
    condition: Callable[[], Awaitable[bool] | bool],
    *,
    within: float = 5.0,
    what: str = "condition",
) -> None:
    """Poll `condition` (a plain or an async function) until it holds, failing after `within`
    seconds (a deadline, not a nap)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within

    async def holds() -> bool:
        result = condition()
        return bool(await result) if inspect.isawaitable(result) else bool(result)

    while not await holds():
        if loop.time() > deadline:
            pytest.fail(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.01)


@pytest.fixture
def write_config(tmp_path: Path) -> Callable[..., Path]:
    """Write a medianest.toml into tmp_path from the defaults plus `overrides` per section."""

    def write(**overrides: dict[str, Any]) -> Path:
        document = default_document(secret_key=SECRET)
        for section, values in overrides.items():
            document.setdefault(section, {}).update(values)
        path = tmp_path / "medianest.toml"
        path.write_text(tomli_w.dumps(document), encoding="utf-8")
        return path

    return write


@pytest.fixture
def config(write_config: Callable[..., Path]) -> Config:
    return load_config(write_config(), environ={})


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ServerProcess:
    """A `medianest serve` (or any command) in a subprocess, its log captured to a file."""

    def __init__(self, argv: list[str], port: int, log_path: Path, env: dict[str, str]) -> None:
        self.port = port
        self.url = f"http://127.0.0.1:{port}"
        self.log_path = log_path
        self._log = log_path.open("wb")
        self.proc = subprocess.Popen(argv, stdout=self._log, stderr=subprocess.STDOUT, env=env)

    @property
    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_ready(self, path: str = "/health/ready", timeout: float = 30.0) -> float:
        """Poll until `path` answers 200; returns the seconds it took. Fails if the process dies."""
        start = time.monotonic()
        deadline = start + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"server exited with {self.proc.returncode}:\n{self.log}")
            try:
                with urllib.request.urlopen(self.url + path, timeout=2) as response:
                    if response.status == 200:
                        return time.monotonic() - start
            except (OSError, urllib.error.URLError):
                pass
            time.sleep(0.05)
        pytest.fail(f"server not ready after {timeout}s:\n{self.log}")

    def stop(self, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self._log.close()
        return self.proc.returncode


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., ServerProcess]]:
    """Start `medianest serve --config PATH --port N` (or `argv`); stopped after the test."""
    started: list[ServerProcess] = []

    def start(config_path: Path, *, argv: list[str] | None = None) -> ServerProcess:
        port = free_port()
        command = argv or [sys.executable, "-m", "medianest_server", "serve"]
        command = [*command, "--config", str(config_path), "--port", str(port)]
        env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIANEST_")}
        server = ServerProcess(command, port, tmp_path / f"server-{port}.log", env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


REDIS_URL = os.environ.get("MEDIANEST_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")


_admin_connection = postgres_admin_connection


@pytest.fixture(scope="session")
def postgres_server(medianest_postgres_server: str) -> str:
    return medianest_postgres_server


@pytest.fixture
def postgres_url(medianest_postgres_url: str) -> str:
    """The URL of a fresh, empty PostgreSQL database, dropped after the test."""
    return medianest_postgres_url


@pytest.fixture(params=["sqlite", "postgresql"])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The URL of an empty database, once on SQLite (a file in tmp_path), once on PostgreSQL."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/medianest.db"  # tmp_path is absolute: four slashes
    url: str = request.getfixturevalue("postgres_url")
    return url


@pytest.fixture
def app_config(write_config: Callable[..., Path], database_url: str) -> Config:
    """A validated config on each database backend, its data_dir in tmp_path."""
    return load_config(write_config(database={"url": database_url}), environ={})


@pytest.fixture
async def raw_db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A connected Database with no tables, on each backend."""
    db = open_database(database_url, base_dir=tmp_path)
    await db.connect()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def db(raw_db: Database) -> Database:
    """A connected Database with the core schema, on each backend."""
    await apply_migrations(raw_db, load_migrations("core", CORE_MIGRATIONS, raw_db.dialect))
    return raw_db


class RedisEnv:
    """Clients to the test Redis, and a key prefix unique to this test whose keys are deleted
    afterwards. Nothing connects until `client()` is called, so memory-only runs need no Redis."""

    def __init__(self) -> None:
        self.prefix = f"medianest:test:{uuid.uuid4().hex[:12]}:"
        self.clients: list[aioredis.Redis] = []

    async def client(self, *, name: str | None = None) -> aioredis.Redis:
        """A new client with its own connection pool, as a separate server instance would have."""
        # the options medianest_server/services.py builds its client with
        client = aioredis.Redis.from_url(
            REDIS_URL,
            client_name=name,
            socket_connect_timeout=5,
            socket_timeout=10,
            health_check_interval=30,
        )
        try:
            await client.ping()
        except (RedisError, OSError) as exc:
            await client.aclose()
            service_missing("Redis", exc)
        self.clients.append(client)
        return client

    async def cleanup(self) -> None:
        if not self.clients:
            return
        client = await self.client()
        keys = [key async for key in client.scan_iter(match=self.prefix + "*", count=1000)]
        if keys:
            await client.unlink(*keys)
        for each in self.clients:
            await each.aclose()


@pytest.fixture
def redis_url() -> str:
    """REDIS_URL once Redis answers a ping there; skips (fails in CI) when it does not.
    Synchronous, so synchronous fixtures can depend on it."""
    import redis

    client = redis.Redis.from_url(REDIS_URL, socket_connect_timeout=3)
    try:
        client.ping()
    except (OSError, RedisError) as exc:
        service_missing(f"Redis at {REDIS_URL}", exc)
    finally:
        client.close()
    return REDIS_URL


@pytest.fixture
async def redis_env() -> AsyncIterator[RedisEnv]:
    env = RedisEnv()
    yield env
    await env.cleanup()
