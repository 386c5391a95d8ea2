"""Fixtures for the live-event tests: assembled apps on a real database (and Redis when asked),
people with real credentials, and small SSE and WebSocket clients that read with deadlines.

Redis pub/sub channels are shared by everything using the test Redis, so each test publishes
events of its own type prefix (`Site.kind`) and the readers skip any other event.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web
from aiohttp.test_utils import TestServer

from medianest_server.app import create_app
from medianest_server.appkeys import SERVICES
from medianest_server.auth.models import User
from medianest_server.auth.services import AUTH_SERVICES, AuthServices
from medianest_server.auth.sessions import SESSION_COOKIE, digest
from medianest_server.config import load_config
from medianest_server.events import Event, make_event
from medianest_server.web import realtime

HEARTBEAT = 0.5  # seconds between pings and sign-in re-checks in these tests
WAIT = 5.0  # the deadline on every wait for something the server should send


@dataclass
class Person:
    user: User
    session_secret: str  # the browser cookie
    session_id: str
    api_token: str

    @property
    def cookie(self) -> dict[str, str]:
        return {"Cookie": f"{SESSION_COOKIE}={self.session_secret}"}

    @property
    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_token}"}


@dataclass
class Site:
    """One assembled, started app, and how to act on it."""

    app: web.Application
    server: TestServer
    http: aiohttp.ClientSession
    kind: str  # this test's event type prefix: `<kind>.thing.happened`
    _people: dict[str, Person] = field(default_factory=dict)

    @property
    def url(self) -> str:
        return str(self.server.make_url(""))

    @property
    def auth(self) -> AuthServices:
        return self.app[AUTH_SERVICES]

    async def person(self, username: str, *, role: str = "user") -> Person:
        """A user (created on first use) with a browser session and an API token."""
        if username in self._people:
            return self._people[username]
        user = await self.auth.users.create(username, role=role)  # type: ignore[arg-type]
        # the session row and cookie secret that signing in through /login creates
        secret, info = await self.auth.sessions.create(
            user.id, kind="browser", ip="127.0.0.1", user_agent="test", data={"user_id": user.id}
        )
        assert info.id == digest(secret)
        token, _ = await self.auth.api_tokens.create(user.id, "live events")
        person = Person(user, secret, info.id, token)
        self._people[username] = person
        return person

    async def publish(self, topic: str, n: int = 0) -> Event:
        event = make_event(f"{self.kind}.thing.happened", {"n": n}, topic=topic)
        await self.app[SERVICES].events.publish(event)
        return event

    async def sse(self, headers: dict[str, str], query: str = "") -> SseClient:
        # no total deadline for a stream; every read has one (pings come every HEARTBEAT)
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=WAIT, sock_read=WAIT)
        async with asyncio.timeout(WAIT):
            response = await self.http.get(
                f"{self.url}/api/v1/events{query}", headers=headers, timeout=timeout
            )
        assert response.status == 200, (response.status, await response.text())
        return SseClient(response, self.kind)

    async def ws(self, headers: dict[str, str], **kwargs: Any) -> WsClient:
        async with asyncio.timeout(WAIT):
            socket = await self.http.ws_connect(
                f"{self.url}/ws", headers=headers, autoping=False, **kwargs
            )
        client = WsClient(socket, self.kind)
        hello = await client.receive()  # sent once the server's subscription is in place
        assert hello["type"] == "subscriptions", hello
        client.topics = set(hello["topics"])
        return client


@dataclass
class SseMessage:
    id: str | None = None
    event: str | None = None
    data: str | None = None
    comment: str | None = None

    @property
    def json(self) -> dict[str, Any]:
        assert self.data is not None
        value: dict[str, Any] = json.loads(self.data)
        return value


class SseClient:
    """Reads an event stream message by message (and comment by comment)."""

    def __init__(self, response: aiohttp.ClientResponse, kind: str) -> None:
        self.response = response
        self.kind = kind

    async def message(self, within: float = WAIT) -> SseMessage | None:
        """The next message or comment; None when the stream ended."""
        async with asyncio.timeout(within):
            message = SseMessage()
            while True:
                raw = await self.response.content.readline()
                if not raw:
                    return None
                line = raw.decode().rstrip("\r\n")
                if not line:
                    if message.data is not None:
                        return message
                    continue
                name, _, value = line.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if name == "":
                    return SseMessage(comment=value)
                setattr(message, name, value)

    async def event(self, within: float = WAIT, *, also: tuple[str, ...] = ()) -> dict[str, Any]:
        """The next event of this test, or of a type in `also` (others on a shared Redis are
        skipped)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await self.message(max(0.0, deadline - loop.time()))
            assert message is not None, "the stream ended before the event came"
            if message.data is None:
                continue
            event = message.json
            assert message.id == event["id"] and message.event == event["type"]
            if event["type"].startswith(self.kind + ".") or event["type"] in also:
                return event

    async def ended(self, within: float = WAIT) -> bool:
        """Whether the server ends the stream within `within` seconds (events of this test fail)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + within
        while True:
            message = await self.message(max(0.0, deadline - loop.time()))
            if message is None:
                return True
            if message.data is not None and message.json["type"].startswith(self.kind + "."):
                raise AssertionError(f"unexpected event {message.json}")

    def close(self) -> None:
        self.response.close()


class WsClient:
    """A socket opened without aiohttp's autoping: it answers pings itself and, like a browser,
    ignores a pong it can no longer send (aiohttp's would raise from receive() when the server
    pinged just before closing, and the close frame behind the ping would be lost)."""

    def __init__(self, socket: aiohttp.ClientWebSocketResponse, kind: str) -> None:
        self.socket = socket
        self.kind = kind
        self.topics: set[str] = set()

    async def _next(self) -> aiohttp.WSMessage:
        while True:
            message = await self.socket.receive()
            if message.type != aiohttp.WSMsgType.PING:
                return message
            with contextlib.suppress(ConnectionError):
                await self.socket.pong(message.data)

    async def send(self, message: Any) -> None:
        await self.socket.send_str(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, within: float = WAIT) -> dict[str, Any]:
        """The next message that is not someone else's event."""
        async with asyncio.timeout(within):
            while True:
                message = await self._next()
                assert message.type == aiohttp.WSMsgType.TEXT, message
                value: dict[str, Any] = json.loads(message.data)
                if value["type"] == "event" and not value["event"]["type"].startswith(
                    self.kind + "."
                ):
                    continue
                return value

    async def event(self, within: float = WAIT) -> dict[str, Any]:
        message = await self.receive(within)
        assert message["type"] == "event", message
        event: dict[str, Any] = message["event"]
        return event

    async def closed(self, within: float = WAIT) -> int | None:
        """The code the server closes the socket with (events of this test fail)."""
        async with asyncio.timeout(within):
            while True:
                message = await self._next()
                if message.type == aiohttp.WSMsgType.CLOSE:
                    code: int = message.data  # what the server sent in its close frame
                    return code
                if message.type == aiohttp.WSMsgType.CLOSED:
                    return self.socket.close_code
                assert message.type == aiohttp.WSMsgType.TEXT, message
                value = json.loads(message.data)
                if value["type"] == "event":
                    assert not value["event"]["type"].startswith(self.kind + "."), value


MakeSite = Callable[..., Awaitable[Site]]


@pytest.fixture(params=["memory", "redis"])
def bus(request: pytest.FixtureRequest) -> str:
    """Which event bus the app runs on: in-process, or Redis pub/sub."""
    return str(request.param)


@pytest.fixture
async def make_site(
    write_config: Callable[..., Path], tmp_path: Path, aiohttp_server: Any
) -> AsyncIterator[MakeSite]:
    """`await make_site(database_url=..., redis_url=...)`: an assembled, started app whose
    heartbeat is HEARTBEAT seconds. Apps made in one test share the event type prefix."""
    kind = "rt" + uuid.uuid4().hex[:10]
    sessions: list[aiohttp.ClientSession] = []

    async def make(
        *,
        database_url: str | None = None,
        redis_url: str = "",
        heartbeat: float = HEARTBEAT,
        **sections: dict[str, Any],
    ) -> Site:
        index = len(sessions)
        sections = {k: dict(v) for k, v in sections.items()}
        sections.setdefault("database", {})["url"] = (
            database_url or f"sqlite:///{tmp_path}/medianest-{index}.db"
        )
        sections.setdefault("redis", {})["url"] = redis_url
        sections.setdefault("auth", {}).setdefault("api_requests_per_minute", 0)
        config = load_config(write_config(**sections), environ={})
        app = create_app(config, plugins=[], environ={})
        app[realtime.HEARTBEAT_SECONDS] = heartbeat
        server = await aiohttp_server(app)
        http = aiohttp.ClientSession()
        sessions.append(http)
        return Site(app=app, server=server, http=http, kind=kind)

    yield make
    for http in sessions:
        await http.close()


@pytest.fixture
async def site(make_site: MakeSite, bus: str, request: pytest.FixtureRequest) -> Site:
    """The app on SQLite, on the in-process bus or on Redis (`bus`)."""
    url = request.getfixturevalue("redis_url") if bus == "redis" else ""
    return await make_site(redis_url=url)
