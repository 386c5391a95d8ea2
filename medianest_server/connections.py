"""Supervised long-running connections: a WebSocket or Socket.IO client, a long poll.

Plugins return :class:`LiveConnection` objects from ``medianest_connections``; the core adds them
to one :class:`ConnectionSupervisor` per instance. Each runs as its own asyncio task for as long
as the connection lives. When ``run`` returns or raises, the supervisor starts it again after a
backoff (``backoff_seconds`` doubling up to ``max_backoff_seconds``, ± 10 %; back to the start
once the connection, reported up with ``link.connected()``, held for 30 s), logs the first
failure of a streak and the recovery, and keeps the state the admin health page and the support
bundle show.
A ``leader_only`` connection runs on the instance that leads (see :mod:`medianest_server.leader`)
and is closed on an instance that stops leading. Periodic work belongs in :mod:`.tasks`.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from aiohttp import web

from .aio import cancel_and_wait
from .clock import SYSTEM_CLOCK, Clock
from .leader import LeaderElection

logger = logging.getLogger("medianest.connections")

#: How long shutdown (or a plugin restart) waits for a cancelled connection to end.
STOP_WAIT_SECONDS = 10.0
#: How often a leader-only connection checks whether this instance (still) leads.
LEADER_CHECK_SECONDS = 5.0
# a connection up at least this long counts as having held: its backoff starts over
STABLE_AFTER = timedelta(seconds=30)
_MAX_EXPONENT = 30

ConnectionState = Literal["connecting", "connected", "retrying", "standby", "stopped"]


class ConnectionLink:
    """What ``run`` gets: call :meth:`connected` once the connection is up (after the
    handshake, the first message, the subscription). Until then the state is ``connecting``;
    after it, the next restart waits the shortest backoff again."""

    def __init__(self, name: str, on_connected: Callable[[], None]) -> None:
        self.name = name
        self._on_connected = on_connected

    def connected(self) -> None:
        """Say the connection is up now; call it again after a reconnect of your own."""
        self._on_connected()


@dataclass(frozen=True)
class LiveConnection:
    """A connection the core keeps open: ``run(link)`` holds it for as long as it lives.

    ``run`` is a coroutine function taking a :class:`ConnectionLink`. Returning or raising ends
    this connection; the core starts ``run`` again after ``backoff_seconds``, doubling up to
    ``max_backoff_seconds`` while it keeps failing. ``leader_only=True``: only on the instance
    that leads when several share PostgreSQL or Redis.
    """

    name: str
    run: Callable[[ConnectionLink], Awaitable[None]]
    leader_only: bool = False
    backoff_seconds: float = 1.0
    max_backoff_seconds: float = 300.0

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("a connection needs a name")
        if self.backoff_seconds <= 0:
            raise ValueError(f"connection {self.name!r}: backoff_seconds must be positive")
        if self.max_backoff_seconds < self.backoff_seconds:
            raise ValueError(
                f"connection {self.name!r}: max_backoff_seconds must be >= backoff_seconds"
            )


@dataclass(frozen=True)
class ConnectionStatus:
    """What the admin pages show about one connection."""

    owner: str
    name: str
    leader_only: bool
    state: ConnectionState
    since: datetime | None  # when the current state began
    connected_since: datetime | None
    retrying_since: datetime | None  # first loss of the current streak; None while connected
    next_attempt_at: datetime | None
    last_error: str | None
    restarts: int

    def as_dict(self) -> dict[str, object]:
        def iso(value: datetime | None) -> str | None:
            return value.isoformat() if value is not None else None

        return {
            "owner": self.owner,
            "name": self.name,
            "leader_only": self.leader_only,
            "state": self.state,
            "since": iso(self.since),
            "connected_since": iso(self.connected_since),
            "retrying_since": iso(self.retrying_since),
            "next_attempt_at": iso(self.next_attempt_at),
            "last_error": self.last_error,
            "restarts": self.restarts,
        }


class _Entry:
    def __init__(self, connection: LiveConnection, owner: str, clock: Clock) -> None:
        self.connection = connection
        self.owner = owner
        self._clock = clock
        self.state: ConnectionState = "stopped"
        self.since: datetime | None = None
        self.connected_since: datetime | None = None
        self.retrying_since: datetime | None = None
        self.next_attempt_at: datetime | None = None
        self.last_error: str | None = None
        self.restarts = 0
        self.failures_in_a_row = 0
        self.reported_up = False  # during the current run
        self.handle: asyncio.Task[None] | None = None

    @property
    def label(self) -> str:
        return f"{self.owner}/{self.connection.name}"

    def enter(self, state: ConnectionState) -> None:
        if state != self.state:
            self.state, self.since = state, self._clock.now()

    def mark_connected(self) -> None:
        if self.retrying_since is not None:
            logger.info(
                "connection %s is up again after %d restarts in a row",
                self.label,
                self.failures_in_a_row,
                extra={"connection_owner": self.owner, "connection_name": self.connection.name},
            )
        self.enter("connected")
        self.connected_since = self._clock.now()
        self.retrying_since = None
        self.reported_up = True  # the backoff starts over only once it has held (STABLE_AFTER)

    def status(self) -> ConnectionStatus:
        return ConnectionStatus(
            owner=self.owner,
            name=self.connection.name,
            leader_only=self.connection.leader_only,
            state=self.state,
            since=self.since,
            connected_since=self.connected_since if self.state == "connected" else None,
            retrying_since=self.retrying_since,
            next_attempt_at=self.next_attempt_at,
            last_error=self.last_error,
            restarts=self.restarts,
        )


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


class _LeadershipLost(Exception):
    pass


class ConnectionSupervisor:
    """Runs the supervised connections of one instance.

    ``leader`` decides leader-only connections (asked with ``is_leader()``; starting and
    stopping it is up to its owner). ``clock``, ``rng`` and ``sleep`` are injectable so tests
    run without real waiting.
    """

    def __init__(
        self,
        *,
        leader: LeaderElection,
        clock: Clock = SYSTEM_CLOCK,
        rng: random.Random | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self._leader = leader
        self._clock = clock
        self._rng = rng or random.Random()  # noqa: S311 - jitter, not secrets
        self._sleep = sleep
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._started = False

    def add(self, connection: LiveConnection, *, owner: str) -> None:
        """Add ``connection`` of ``owner`` (a plugin name); names are unique per owner.

        Added while the supervisor is started, the connection starts at once."""
        key = (owner, connection.name)
        if key in self._entries:
            raise ValueError(f"{owner} already has a connection named {connection.name!r}")
        entry = _Entry(connection, owner, self._clock)
        self._entries[key] = entry
        if self._started:
            self._launch(entry)

    async def remove_owner(self, owner: str) -> None:
        """Close and forget every connection of ``owner`` (a plugin being restarted)."""
        entries = [e for key, e in self._entries.items() if key[0] == owner]
        for entry in entries:
            del self._entries[(owner, entry.connection.name)]
        await self._cancel(entries)

    async def start(self) -> None:
        """Start every connection (each as its own asyncio task)."""
        if self._started:
            return
        self._started = True
        for entry in self._entries.values():
            self._launch(entry)

    async def stop(self) -> None:
        """Cancel every connection and wait (up to ``STOP_WAIT_SECONDS``) until they end."""
        self._started = False
        await self._cancel(list(self._entries.values()))

    def status(self) -> list[ConnectionStatus]:
        """Every connection's state, sorted by owner and name."""
        return [self._entries[key].status() for key in sorted(self._entries)]

    async def _cancel(self, entries: list[_Entry]) -> None:
        handles = [e.handle for e in entries if e.handle is not None]
        for entry in entries:
            entry.handle = None
            entry.next_attempt_at = None
            entry.enter("stopped")
        await cancel_and_wait(handles, within=STOP_WAIT_SECONDS)

    # -- one connection ----------------------------------------------------------------------

    def _launch(self, entry: _Entry) -> None:
        entry.handle = asyncio.create_task(self._loop(entry), name=f"connection {entry.label}")

    async def _loop(self, entry: _Entry) -> None:
        connection = entry.connection
        while True:
            if connection.leader_only and not self._leader.is_leader():
                entry.enter("standby")  # another instance holds it; no failure
                entry.next_attempt_at = None
                await self._sleep(LEADER_CHECK_SECONDS)
                continue
            ended = await self._run_once(entry)
            if ended is None:  # this instance stopped leading: closed on purpose
                continue
            self._record_loss(entry, *ended)
            delay = self._delay(entry)
            entry.next_attempt_at = self._clock.now() + timedelta(seconds=delay)
            await self._sleep(delay)
            entry.next_attempt_at = None

    async def _run_once(self, entry: _Entry) -> tuple[str, BaseException | None] | None:
        """Run the connection until it ends; why it ended (None: leadership lost)."""
        entry.enter("connecting")
        entry.reported_up = False
        link = ConnectionLink(entry.connection.name, entry.mark_connected)
        watcher = (
            asyncio.create_task(self._watch_leadership()) if entry.connection.leader_only else None
        )
        running: asyncio.Task[None] = asyncio.ensure_future(entry.connection.run(link))
        try:
            if watcher is None:
                await asyncio.wait([running])
            else:
                await asyncio.wait([running, watcher], return_when=asyncio.FIRST_COMPLETED)
        finally:
            # shutdown, restart, or the other one ended first
            children = [t for t in (running, watcher) if t is not None]
            await cancel_and_wait(children, within=STOP_WAIT_SECONDS)
        if not running.done() or running.cancelled():
            if watcher is not None and watcher.done():
                logger.info(
                    "connection %s closed: this instance no longer leads",
                    entry.label,
                    extra={"connection_owner": entry.owner},
                )
                return None
            return "cancelled from inside the connection", None
        exc = running.exception()
        if exc is None:
            return "the connection ended", None
        return _describe(exc), exc

    async def _watch_leadership(self) -> None:
        while self._leader.is_leader():
            await self._sleep(LEADER_CHECK_SECONDS)

    def _record_loss(self, entry: _Entry, error: str, exc: BaseException | None) -> None:
        entry.restarts += 1
        entry.last_error = error
        up_since = entry.connected_since if entry.reported_up else None
        if up_since is not None and self._clock.now() - up_since >= STABLE_AFTER:
            # it held: start again from the shortest wait (one that connects and drops at
            # once keeps backing off instead of reconnecting every second forever)
            entry.failures_in_a_row = 0
        entry.failures_in_a_row += 1
        entry.enter("retrying")
        if entry.retrying_since is None:  # once per streak; status() shows the rest
            entry.retrying_since = self._clock.now()
            logger.warning(
                "connection %s lost: %s (restarting with backoff; logged again once it is up)",
                entry.label,
                error,
                exc_info=exc,
                extra={"connection_owner": entry.owner, "connection_name": entry.connection.name},
            )

    def _delay(self, entry: _Entry) -> float:
        connection = entry.connection
        exponent = min(entry.failures_in_a_row - 1, _MAX_EXPONENT)
        base = min(connection.max_backoff_seconds, connection.backoff_seconds * 2.0**exponent)
        return base * self._rng.uniform(0.9, 1.1)


CONNECTIONS = web.AppKey("connections", ConnectionSupervisor)
