"""What a signed-in request needs about its user, kept in this process for a few seconds.

A signed-in request would otherwise query the database for its session or API token, its
user, their preferences and their unread notifications. Sessions and tokens are kept by the
SHA-256 of their secret, the rest by user id, each entry tagged with its user for `ttl`.

Whatever could end or alter one of them (sign-out, revoke, password change, role change,
disable, delete, a refreshed name, saved preferences, a notification read) calls
`changed(user_id)`: this instance forgets that user's entries before the call returns, and the
event `core.user.changed` (topic `user:<id>`) makes every other instance forget them too,
through Redis when it is configured; a new notification's own event does the same. `ttl`
bounds what a lost message or a hand edit of the database can leave behind.

A lookup that started before a change must not put its now-stale answer back: each `put`
carries the generation read before the query and is dropped if a change came in between.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Any, TypeVar

from .clock import SYSTEM_CLOCK, Clock
from .events import EventBus, make_event

log = logging.getLogger("medianest.usercache")

USER_CHANGED = "core.user.changed"
# other events that mean "this user's cached state is stale"
_ALSO_STALE_ON = ("core.notification.created",)
DEFAULT_TTL = 5.0
DEFAULT_MAX_ENTRIES = 10_000
T = TypeVar("T")


@dataclass
class _Entry:
    value: Any
    user_id: int
    stored_at: float


class UserCache:
    def __init__(
        self,
        *,
        clock: Clock = SYSTEM_CLOCK,
        ttl: float = DEFAULT_TTL,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        publish: Callable[[int], Awaitable[None]] | None = None,
    ) -> None:
        if ttl < 0 or max_entries < 1:
            raise ValueError("ttl must not be negative and max_entries must be at least 1")
        self.clock = clock
        self.ttl = ttl
        self.max_entries = max_entries
        self._publish = publish
        self._entries: dict[Hashable, _Entry] = {}
        self._generation = 0

    @property
    def generation(self) -> int:
        """Read before a lookup; hand it to `put` so a change in between wins."""
        return self._generation

    def get(self, key: Hashable) -> Any | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        if self.clock.monotonic() - entry.stored_at >= self.ttl:
            del self._entries[key]
            return None
        return entry.value

    def put(self, key: Hashable, value: Any, *, user_id: int, generation: int) -> None:
        if generation != self._generation or self.ttl == 0:
            return
        if key not in self._entries and len(self._entries) >= self.max_entries:
            # the oldest entry goes: dicts keep insertion order
            del self._entries[next(iter(self._entries))]
        self._entries[key] = _Entry(value, user_id, self.clock.monotonic())

    async def get_or_load(
        self,
        key: Hashable,
        load: Callable[[], Awaitable[T | None]],
        owner: Callable[[T], int],
    ) -> T | None:
        """The cached value of `key`, or `await load()` kept under the user `owner(value)`
        names; None (nothing found) is not kept. A change during the load wins (generation)."""
        hit: T | None = self.get(key)
        if hit is not None:
            return hit
        generation = self._generation
        value = await load()
        if value is not None:
            self.put(key, value, user_id=owner(value), generation=generation)
        return value

    def replace(self, key: Hashable, old: Any, new: Any) -> None:
        """Update a live entry in place (a refreshed `last_seen`), keeping its age: only if it
        still holds `old`, the value this caller read. A change since (forgotten, then filled
        again with fresh data by another request) wins over what this caller knew."""
        entry = self._entries.get(key)
        if entry is not None and entry.value is old:
            entry.value = new

    def forget_user(self, user_id: int) -> None:
        """Drop this user's entries in this process (what `changed` does locally)."""
        self._generation += 1
        for key in [k for k, e in self._entries.items() if e.user_id == user_id]:
            del self._entries[key]

    def clear(self) -> None:
        self._generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    async def changed(self, user_id: int) -> None:
        """Something cached about this user changed: forget it here and everywhere."""
        self.forget_user(user_id)
        if self._publish is not None:
            try:
                await self._publish(user_id)
            except Exception:  # the local change holds; other instances catch up within ttl
                log.warning("could not tell other instances that user %s changed", user_id)


# the default for services built without one (tests, the CLI): keeps nothing
UNCACHED = UserCache(ttl=0)


def event_publisher(bus: EventBus, clock: Clock) -> Callable[[int], Awaitable[None]]:
    """`publish` for a UserCache: a `core.user.changed` event on the user's own topic."""

    async def publish(user_id: int) -> None:
        event = make_event(USER_CHANGED, {"user_id": user_id}, topic=f"user:{user_id}", clock=clock)
        await bus.publish(event)

    return publish


async def forget_on_events(cache: UserCache, bus: EventBus) -> None:
    """Run for the app's lifetime: forget users that another instance reports as changed
    (this instance's own events arrive too: forgetting twice is harmless)."""
    subscription = bus.subscribe(types=[USER_CHANGED, *_ALSO_STALE_ON], max_queue=10_000)
    dropped = 0
    try:
        async for event in subscription:
            if subscription.dropped != dropped:  # fell behind: some change went unseen
                dropped = subscription.dropped
                cache.clear()
            topic = event.topic
            if topic.startswith("user:"):
                cache.forget_user(int(topic.removeprefix("user:")))
    finally:
        subscription.close()


def start_listener(cache: UserCache, bus: EventBus) -> asyncio.Task[None]:
    task = asyncio.get_running_loop().create_task(
        forget_on_events(cache, bus), name="medianest-user-cache"
    )
    task.add_done_callback(_log_crash)
    return task


def _log_crash(task: asyncio.Task[None]) -> None:
    with contextlib.suppress(asyncio.CancelledError):
        if (exc := task.exception()) is not None:
            log.error("user cache listener stopped", exc_info=exc)
