"""Leader election: which one of several instances runs the leader-only background tasks.

One instance on SQLite is always the leader (:class:`AlwaysLeader`). Several instances elect one
through Redis (:class:`RedisLeader`, a key with a TTL that the leader renews) or, without Redis,
through PostgreSQL (:class:`PostgresLeader`, a session-level advisory lock held on a connection
of its own). Leadership is checked cheaply (``is_leader()``) from the last renewal; a leader that
cannot renew in time stops claiming to lead before another instance can take over.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import os
import secrets
import socket
import time
from abc import ABC, abstractmethod
from typing import TYPE_CHECKING

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from medianest_server.aio import cancel_and_wait
from medianest_server.db import Connection, Database, DatabaseError

if TYPE_CHECKING:
    from medianest_server.db.postgres import PostgresDatabase

logger = logging.getLogger("medianest.leader")

#: pg_try_advisory_lock key of the leader lock ("MNLEADER" in ASCII).
PG_LEADER_LOCK_KEY = 0x4D4E4C4541444552
#: How long one statement on the leader's connection may take (the PostgreSQL backend's bound).
STATEMENT_TIMEOUT_SECONDS = 10.0

# Extend the key's TTL only if we still hold it.
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
# Delete the key only if we still hold it.
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then
    return redis.call('del', KEYS[1])
end
return 0
"""


def default_instance_id() -> str:
    """``host:pid:random``: unique per instance, and says where it runs."""
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(4)}"


class LeaderElection(ABC):
    """Decides whether this instance is the leader. Start it before use, stop it at shutdown."""

    instance_id: str

    @abstractmethod
    async def start(self) -> None:
        """Start competing for leadership in the background."""

    @abstractmethod
    async def stop(self) -> None:
        """Stop, giving up leadership at once so another instance can take over."""

    @abstractmethod
    def is_leader(self) -> bool:
        """Whether this instance leads now: cheap, from the last successful renewal."""


class AlwaysLeader(LeaderElection):
    """A single instance (SQLite): always the leader, with nothing to start."""

    def __init__(self, *, instance_id: str | None = None) -> None:
        self.instance_id = instance_id or default_instance_id()

    async def start(self) -> None:
        return None

    async def stop(self) -> None:
        return None

    def is_leader(self) -> bool:
        return True


class _Lease:
    """Leadership as a flag with a local deadline, plus once-per-change logging."""

    def __init__(self, instance_id: str, what: str) -> None:
        self.instance_id = instance_id
        self._what = what
        self._valid_until: float | None = None
        self._failing = False

    def holds(self) -> bool:
        return self._valid_until is not None and time.monotonic() < self._valid_until

    def gained(self, valid_until: float) -> None:
        if self._valid_until is None:
            logger.info(
                "this instance is now the leader (%s)",
                self._what,
                extra={"instance_id": self.instance_id},
            )
        self._valid_until = valid_until

    def lost(self, reason: str, *, level: int = logging.WARNING) -> None:
        if self._valid_until is not None:
            logger.log(
                level,
                "this instance is no longer the leader (%s): %s",
                self._what,
                reason,
                extra={"instance_id": self.instance_id},
            )
        self._valid_until = None

    def failed(self, exc: BaseException) -> None:
        """An error talking to the backend: logged once per streak of errors."""
        if not self._failing:
            self._failing = True
            logger.error(
                "leader election (%s) failed: %s; retrying",
                self._what,
                exc,
                extra={"instance_id": self.instance_id},
            )

    def succeeded(self) -> None:
        if self._failing:
            self._failing = False
            logger.info(
                "leader election (%s) works again",
                self._what,
                extra={"instance_id": self.instance_id},
            )


class RedisLeader(LeaderElection):
    """The instance holding ``key`` in Redis leads.

    Taken with ``SET key id NX PX ttl``; renewed every ``ttl/3`` with a compare-and-pexpire
    script; released with compare-and-delete at stop. A leader that fails to renew stops leading
    at once, and in any case a ``ttl`` after its last successful renewal was sent, which is
    before the key can expire in Redis, so two instances never both believe they lead.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        key: str = "medianest:leader",
        ttl_seconds: float = 15.0,
        instance_id: str | None = None,
    ) -> None:
        if ttl_seconds <= 0:
            raise ValueError("ttl_seconds must be positive")
        self.instance_id = instance_id or default_instance_id()
        self._client = client
        self._key = key
        self._ttl_seconds = ttl_seconds
        self._ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        self._renew = client.register_script(_RENEW)
        self._release = client.register_script(_RELEASE)
        self._lease = _Lease(self.instance_id, f"Redis key {key}")
        self._task: asyncio.Task[None] | None = None
        self._stopping = False

    def is_leader(self) -> bool:
        return self._lease.holds()

    async def start(self) -> None:
        if self._task is None:
            self._stopping = False
            self._task = asyncio.create_task(self._run(), name=f"leader {self._key}")

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is None:
            return
        self._stopping = True  # ends the loop even if a Redis call swallows the cancel
        await cancel_and_wait([task], within=self._ttl_seconds + 5.0)
        self._lease.lost("stopping", level=logging.INFO)
        try:  # even if we believe we do not lead: a SET cut short by cancel may have landed
            await self._release(keys=[self._key], args=[self.instance_id])
        except (RedisError, OSError) as exc:  # the key expires after the TTL anyway
            logger.warning(
                "could not release the leader key %s: %s",
                self._key,
                exc,
                extra={"instance_id": self.instance_id},
            )

    async def _run(self) -> None:
        while not self._stopping:
            await self._attempt()
            await asyncio.sleep(self._ttl_seconds / 3)

    async def _attempt(self) -> None:
        sent_at = time.monotonic()
        try:
            # Renew if the key is ours (also after a stall that let our local deadline pass),
            # else try to take it.
            ok = bool(await self._renew(keys=[self._key], args=[self.instance_id, self._ttl_ms]))
            if not ok:
                ok = bool(
                    await self._client.set(self._key, self.instance_id, nx=True, px=self._ttl_ms)
                )
        except (RedisError, OSError) as exc:
            self._lease.failed(exc)
            self._lease.lost(f"Redis error: {exc}")
            return
        self._lease.succeeded()
        if ok:
            self._lease.gained(sent_at + self._ttl_seconds)
        else:
            self._lease.lost("another instance holds the key")


class PostgresLeader(LeaderElection):
    """The instance holding a PostgreSQL session-level advisory lock leads.

    The lock is taken with ``pg_try_advisory_lock`` on a connection of its own (outside the
    pool), retried every ``retry_seconds`` while another instance holds it. The leader checks its
    connection as often: if the connection drops, the server frees the lock and this instance
    stops leading at that check. ``stop()`` unlocks and closes the connection at once.
    """

    def __init__(
        self,
        db: Database,
        *,
        lock_key: int = PG_LEADER_LOCK_KEY,
        retry_seconds: float = 5.0,
        instance_id: str | None = None,
    ) -> None:
        from medianest_server.db.postgres import PostgresDatabase

        if not isinstance(db, PostgresDatabase):
            raise TypeError(f"PostgresLeader needs a PostgreSQL database, not {db.dialect}")
        if retry_seconds <= 0:
            raise ValueError("retry_seconds must be positive")
        self.instance_id = instance_id or default_instance_id()
        self._db: PostgresDatabase = db
        self._lock_key = lock_key
        self._retry_seconds = retry_seconds
        self._lease = _Lease(self.instance_id, f"PostgreSQL advisory lock {lock_key}")
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def is_leader(self) -> bool:
        return self._lease.holds()

    async def start(self) -> None:
        if self._task is None:
            self._stopping.clear()
            self._task = asyncio.create_task(self._run(), name="leader postgresql")

    async def stop(self) -> None:
        task, self._task = self._task, None
        self._lease.lost("stopping", level=logging.INFO)
        if task is None:
            return
        self._stopping.set()
        try:
            # unlocks and closes; a statement hanging on a broken connection is cut short
            await asyncio.wait_for(asyncio.shield(task), self._retry_seconds + 1.0)
        except TimeoutError:  # closing the connection frees the lock too
            await cancel_and_wait([task], within=5.0)

    async def _pause(self) -> bool:
        """Wait ``retry_seconds``; True when stop() was called meanwhile."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), self._retry_seconds)
        return self._stopping.is_set()

    async def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                async with self._db.dedicated_connection() as conn:
                    self._lease.succeeded()
                    await self._hold(conn)
                    return
            except (DatabaseError, OSError) as exc:
                self._lease.failed(exc)
                self._lease.lost(f"database error: {exc}")
            if await self._pause():
                return

    async def _hold(self, conn: Connection) -> None:
        """Try for the lock until stop(), checking the connection while it is held."""
        held = False
        while True:
            sent_at = time.monotonic()
            if held:
                await conn.fetch_val("SELECT 1")
            else:
                held = bool(
                    await conn.fetch_val(
                        "SELECT pg_try_advisory_lock(:key)", {"key": self._lock_key}
                    )
                )
            if held and not self._stopping.is_set():
                # Valid until the next check is overdue (a check may take a statement timeout).
                self._lease.gained(sent_at + 2 * self._retry_seconds + STATEMENT_TIMEOUT_SECONDS)
            if await self._pause():
                if held:
                    await conn.fetch_val("SELECT pg_advisory_unlock(:key)", {"key": self._lock_key})
                return
