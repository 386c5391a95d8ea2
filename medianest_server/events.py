"""The event bus: plugins and the core publish events; handlers, /ws and SSE clients receive them.

An event is `{id, type, at, topic, data}`. Its type is `<plugin>.<noun>.<verb>`, past tense for
facts (`youtube.download.completed`); its topic says who may receive it: `user:<id>`, `admins` or
`all`. Ids sort in creation order within an instance, and by time across instances, so a client
resuming with Last-Event-ID gets the events after it from `EventBus.history`.

`MemoryEventBus` serves one instance; `RedisEventBus` carries events between instances over one
Redis pub/sub channel. Delivery is cheap and never blocks the publisher: each subscription has a
bounded queue, and a consumer that falls behind loses its oldest events (counted in `dropped`).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import re
import secrets
import threading
from abc import ABC, abstractmethod
from collections import deque
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from medianest_server.clock import SYSTEM_CLOCK, Clock

logger = logging.getLogger(__name__)

EVENT_TYPE = re.compile(r"^[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*$")
TOPIC = re.compile(r"^(?:user:(?:0|[1-9][0-9]*)|admins|all)$")
# what `subscribe(types=...)` accepts besides exact types: "*", "plex.*", "plex.library.*"
_TYPE_WILDCARD = re.compile(r"^(?:\*|[a-z][a-z0-9_]*\.\*|[a-z][a-z0-9_]*\.[a-z][a-z0-9_]*\.\*)$")

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def _check_type(type: str) -> None:
    if not isinstance(type, str) or not EVENT_TYPE.fullmatch(type):
        raise ValueError(f"event type {type!r} is not <plugin>.<noun>.<verb> in lower snake case")


def _check_topic(topic: str) -> None:
    if not isinstance(topic, str) or not TOPIC.fullmatch(topic):
        raise ValueError(f"event topic {topic!r} is not 'user:<id>', 'admins' or 'all'")


@dataclass(frozen=True)
class Event:
    """Something that happened, for the subscribers allowed to see `topic`."""

    id: str
    type: str
    at: datetime
    topic: str
    data: Mapping[str, Any]

    def to_dict(self) -> dict[str, Any]:
        """The event as JSON-ready values, `at` in ISO 8601 UTC (`...Z`)."""
        at = self.at.astimezone(UTC).isoformat().replace("+00:00", "Z")
        return {
            "id": self.id,
            "type": self.type,
            "at": at,
            "topic": self.topic,
            "data": dict(self.data),
        }

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        """The event `to_dict` described; ValueError if a field is missing or malformed."""
        try:
            id_, type_, topic, data = d["id"], d["type"], d["topic"], d.get("data") or {}
            at = datetime.fromisoformat(d["at"])
        except (KeyError, TypeError) as exc:
            raise ValueError(f"not an event: {exc!r}") from exc
        _check_type(type_)
        _check_topic(topic)
        if not isinstance(id_, str) or not id_:
            raise ValueError(f"event id {id_!r} is not a non-empty string")
        if at.tzinfo is None:
            raise ValueError(f"event time {d['at']!r} has no timezone")
        if not isinstance(data, Mapping):
            raise ValueError(f"event data must be an object, not {type(data).__name__}")
        return cls(id=id_, type=type_, at=at, topic=topic, data=dict(data))


_id_lock = threading.Lock()
_last_id_ns = 0


def _new_id(at: datetime) -> str:
    """Fixed-width hex nanoseconds (strictly increasing in this process) and a random suffix."""
    global _last_id_ns
    ns = (at - _EPOCH) // _MICROSECOND * 1000
    with _id_lock:
        ns = max(ns, _last_id_ns + 1)
        _last_id_ns = ns
    return f"{ns:016x}-{secrets.token_hex(4)}"


def make_event(
    type: str,
    data: Mapping[str, Any] | None = None,
    *,
    topic: str = "all",
    clock: Clock = SYSTEM_CLOCK,
) -> Event:
    """A new event of `type` for `topic`, stamped by `clock` with a fresh sortable id.

    Raises ValueError naming the bad value if the type is not `<plugin>.<noun>.<verb>`, the
    topic not `user:<id>`/`admins`/`all`, or the data not JSON-serialisable.
    """
    _check_type(type)
    _check_topic(topic)
    payload = dict(data or {})
    try:
        json.dumps(payload, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"data of event {type!r} is not JSON-serialisable: {exc}") from exc
    at = clock.now()
    return Event(id=_new_id(at), type=type, at=at, topic=topic, data=payload)


def topics_for(user_id: int, is_admin: bool) -> frozenset[str]:
    """The topics a user may receive: their own, "all", and "admins" for administrators."""
    topics = {f"user:{user_id}", "all"}
    if is_admin:
        topics.add("admins")
    return frozenset(topics)


class Subscription:
    """Events for one subscriber, oldest first: `async for event in sub`, or `await sub.get()`.

    Made by `EventBus.subscribe`; read by one consumer at a time. Iteration ends when the
    subscription or its bus is closed (events still queued are then discarded).
    """

    def __init__(
        self,
        bus: EventBus,
        topics: frozenset[str] | None,
        types: frozenset[str] | None,
        type_prefixes: tuple[str, ...],
        max_queue: int,
    ) -> None:
        self.topics = topics
        self._bus = bus
        self._types = types
        self._type_prefixes = type_prefixes
        self._queue: deque[Event] = deque(maxlen=max_queue)
        self._waiter: asyncio.Future[None] | None = None
        self._closed = False
        self.dropped = 0
        """How many events were discarded because the consumer fell behind."""

    @property
    def closed(self) -> bool:
        return self._closed

    def _wants(self, event_type: str) -> bool:
        if self._types is None:
            return True
        return event_type in self._types or event_type.startswith(self._type_prefixes)

    def _deliver(self, event: Event) -> None:
        if len(self._queue) == self._queue.maxlen:
            self.dropped += 1  # the deque drops the oldest as we append
        self._queue.append(event)
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    def close(self) -> None:
        """Stop receiving; a pending `get` returns None and iteration ends."""
        if self._closed:
            return
        self._closed = True
        self._queue.clear()
        self._bus._unsubscribe(self)
        self._wake()

    async def get(self, timeout: float | None = None) -> Event | None:  # noqa: ASYNC109 (API)
        """The next event; None if `timeout` seconds pass first or the subscription is closed."""
        if self._queue:
            return self._queue.popleft()
        if self._waiter is not None:
            raise RuntimeError("another task is already waiting on this subscription")
        loop = asyncio.get_running_loop()
        deadline = None if timeout is None else loop.time() + timeout
        while not self._queue:
            if self._closed:
                return None
            self._waiter = waiter = loop.create_future()
            try:
                if deadline is None:
                    await waiter
                else:
                    await asyncio.wait_for(waiter, max(0.0, deadline - loop.time()))
            except TimeoutError:
                return None
            finally:
                self._waiter = None
        return self._queue.popleft()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        event = await self.get()
        if event is None:
            raise StopAsyncIteration
        return event


class EventBus(ABC):
    """Publish events and subscribe to them; call `start()` before publishing, `close()` at the
    end. Subscriber bookkeeping and the history buffer are shared by both backends."""

    def __init__(self, *, history_size: int = 1000) -> None:
        if history_size < 0:
            raise ValueError(f"history_size must not be negative, not {history_size}")
        # dicts as ordered sets: delivery order follows subscription order
        self._by_topic: dict[str, dict[Subscription, None]] = {}
        self._any_topic: dict[Subscription, None] = {}
        self._history: deque[Event] = deque(maxlen=history_size)
        self._started = False
        self._closed = False

    @abstractmethod
    async def start(self) -> None:
        """Get ready to publish and receive."""

    @abstractmethod
    async def publish(self, event: Event) -> None:
        """Deliver `event` to every matching subscriber (on every instance), in publish order."""

    async def close(self) -> None:
        """Stop; every subscription's iteration ends."""
        self._closed = True
        for sub in [*self._any_topic, *(s for subs in self._by_topic.values() for s in subs)]:
            sub.close()

    def subscribe(
        self,
        *,
        topics: Iterable[str] | None = None,
        types: Iterable[str] | None = None,
        max_queue: int = 1000,
    ) -> Subscription:
        """A subscription to the events of `topics` (None: every topic, for server-side
        handlers) whose type is in `types` (None: all). A type is exact
        (`plex.library.updated`) or a prefix wildcard (`plex.*`, `plex.library.*`, `*`).
        At most `max_queue` events wait for the consumer; beyond that the oldest are dropped.
        Raises ValueError naming a malformed topic or type."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        if max_queue < 1:
            raise ValueError(f"max_queue must be at least 1, not {max_queue}")
        topic_set = None if topics is None else frozenset(topics)
        for topic in topic_set or ():
            _check_topic(topic)
        exact: set[str] = set()
        prefixes: list[str] = []
        match_all = types is None
        for pattern in types or ():
            if pattern == "*":
                match_all = True
            elif _TYPE_WILDCARD.fullmatch(pattern):
                prefixes.append(pattern[:-1])
            else:
                _check_type(pattern)
                exact.add(pattern)
        sub = Subscription(
            self,
            topic_set,
            None if match_all else frozenset(exact),
            tuple(prefixes),
            max_queue,
        )
        if topic_set is None:
            self._any_topic[sub] = None
        for topic in topic_set or ():
            self._by_topic.setdefault(topic, {})[sub] = None
        return sub

    def _unsubscribe(self, sub: Subscription) -> None:
        self._any_topic.pop(sub, None)
        for topic in sub.topics or ():
            subs = self._by_topic.get(topic)
            if subs is not None:
                subs.pop(sub, None)
                if not subs:
                    del self._by_topic[topic]

    def _dispatch(self, event: Event) -> None:
        """Hand `event` to this instance's subscribers: no awaiting, O(matching subscribers)."""
        self._history.append(event)
        for sub in self._by_topic.get(event.topic, ()):
            if sub._wants(event.type):
                sub._deliver(event)
        for sub in self._any_topic:
            if sub._wants(event.type):
                sub._deliver(event)

    def _check_can_publish(self) -> None:
        if self._closed:
            raise RuntimeError("the event bus is closed")
        if not self._started:
            raise RuntimeError("the event bus is not started: call start() first")

    def history(self, *, after: str | None, topics: Iterable[str], limit: int = 500) -> list[Event]:
        """The buffered events after id `after` that `topics` may see, oldest first.

        From the last `history_size` events this instance saw. `after=None` gives []; an id
        no longer buffered gives every buffered event with a later id (all of them if it is
        older than the buffer). At most the newest `limit` events are returned, so they join
        the live stream without a gap. `replay` also says whether anything was lost.
        """
        return self.replay(after=after, topics=topics, limit=limit)[0]

    def replay(
        self, *, after: str | None, topics: Iterable[str], limit: int = 500
    ) -> tuple[list[Event], bool]:
        """`history`, and whether it is complete: False when `after` is older than the buffer
        or more than `limit` events came since, so the client missed some and should reload
        what it shows rather than trust the stream."""
        if after is None:
            return [], True
        if limit <= 0:
            return [], False
        visible = frozenset(topics)
        events = list(self._history)
        complete = True
        for index in range(len(events) - 1, -1, -1):
            if events[index].id == after:
                later = events[index + 1 :]
                break
        else:
            later = [e for e in events if e.id > after]
            # an id this instance does not hold (fell out of the buffer, or came before a
            # restart): whatever happened in between is unknown, unless nothing newer exists
            complete = bool(events) and not later
        mine = [e for e in later if e.topic in visible]
        if len(mine) > limit:
            return mine[-limit:], False
        return mine, complete


class MemoryEventBus(EventBus):
    """Events within one process (one instance of the server)."""

    async def start(self) -> None:
        self._started = True

    async def publish(self, event: Event) -> None:
        self._check_can_publish()
        self._dispatch(event)


class RedisEventBus(EventBus):
    """Events shared by every instance through the Redis pub/sub `channel`.

    `publish` queues the JSON event and returns; a writer task sends the queue in order: one
    event as a JSON object, or the events that queued up during the last round trip as one
    JSON array (one awaited PUBLISH per event would cap a publisher at a few thousand/s).
    A reader task receives the channel and dispatches locally, so this instance gets its own
    events exactly once, in channel order.

    Delivery is at most once, like Redis pub/sub itself: if the connection drops, the reader
    logs once, reconnects with backoff and logs once on recovery, and events published
    meanwhile are missed; if Redis refuses a batch, the writer logs once and drops it rather
    than risk sending it twice. At most `max_pending` events wait for the writer: a publisher
    outrunning Redis waits for room, briefly, then drops the oldest (`publish_dropped`).
    The client is closed by `close()` only if `owns_client`.
    """

    _IDLE_PING_SECONDS = 30.0
    _MAX_BACKOFF_SECONDS = 5.0
    _BATCH = 500
    _CLOSE_FLUSH_SECONDS = 5.0
    _FULL_WAIT_SECONDS = 1.0

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        channel: str = "medianest:events",
        history_size: int = 1000,
        max_pending: int = 10_000,
        owns_client: bool = False,
    ) -> None:
        super().__init__(history_size=history_size)
        self._client = client
        self._channel = channel
        self._owns_client = owns_client
        self._pubsub: PubSub | None = None
        self._reader: asyncio.Task[None] | None = None
        self._saved_retry: dict[PubSub, Retry] = {}
        self._outgoing: deque[str] = deque()
        self._max_pending = max_pending
        self._outgoing_ready = asyncio.Event()
        self._has_room = asyncio.Event()
        self._writer: asyncio.Task[None] | None = None
        self.publish_dropped = 0
        """Events never sent: queued beyond `max_pending`, or in a batch Redis refused."""

    async def start(self) -> None:
        """Subscribe to the channel (returns once Redis confirmed it), start reader and writer."""
        if self._closed:
            raise RuntimeError("the event bus is closed")
        if self._started:
            return
        self._pubsub = await self._connect()
        self._reader = asyncio.create_task(self._read_forever(), name="medianest-event-reader")
        self._writer = asyncio.create_task(self._write_forever(), name="medianest-event-writer")
        self._started = True

    async def publish(self, event: Event) -> None:
        """Queue `event` for Redis. Waits (up to a second) only while `max_pending` events are
        already queued; if there is still no room, the oldest queued event is dropped."""
        self._check_can_publish()
        payload = json.dumps(event.to_dict(), separators=(",", ":"), ensure_ascii=False)
        if len(self._outgoing) >= self._max_pending:
            await self._wait_for_room()
            self._check_can_publish()
        self._outgoing.append(payload)
        self._outgoing_ready.set()

    async def _wait_for_room(self) -> None:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._FULL_WAIT_SECONDS
        while len(self._outgoing) >= self._max_pending and loop.time() < deadline:
            self._has_room.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._has_room.wait(), deadline - loop.time())
        while len(self._outgoing) >= self._max_pending:
            self._outgoing.popleft()
            self.publish_dropped += 1
            if self.publish_dropped % self._max_pending == 1:  # the first, then now and again
                logger.warning(
                    "events are published faster than Redis takes them; dropping the oldest",
                    extra={"channel": self._channel, "dropped": self.publish_dropped},
                )

    async def close(self) -> None:
        """Send what is queued (for up to a few seconds), then stop reading and writing."""
        self._closed = True
        if self._writer is not None:
            if self._outgoing:
                await asyncio.wait([self._writer], timeout=self._CLOSE_FLUSH_SECONDS)
            self._writer.cancel()
            await asyncio.wait([self._writer])
            self._writer = None
        if self._reader is not None:
            self._reader.cancel()
            await asyncio.wait([self._reader])
            self._reader = None
        if self._pubsub is not None:
            await self._disconnect(self._pubsub)
            self._pubsub = None
        await super().close()
        if self._owns_client:
            await self._client.aclose()

    async def _write_forever(self) -> None:
        failing = False
        delay = 0.05
        while True:
            if not self._outgoing:
                if self._closed:
                    return  # everything queued before close() has been sent
                self._outgoing_ready.clear()
                await self._outgoing_ready.wait()
                continue
            batch = [self._outgoing.popleft() for _ in range(min(self._BATCH, len(self._outgoing)))]
            self._has_room.set()
            # what queued up during the last round trip goes as one message, a JSON array
            message = batch[0] if len(batch) == 1 else "[" + ",".join(batch) + "]"
            try:
                await self._client.publish(self._channel, message)
            except (RedisError, OSError) as exc:
                self.publish_dropped += len(batch)
                if not failing:
                    logger.warning(
                        "cannot publish events to Redis; dropping them until it answers",
                        extra={"channel": self._channel, "error": repr(exc)},
                    )
                failing = True
                await asyncio.sleep(delay)
                delay = min(delay * 2, self._MAX_BACKOFF_SECONDS)
                continue
            if failing:
                logger.info("publishing events to Redis again", extra={"channel": self._channel})
                failing = False
                delay = 0.05

    async def _connect(self) -> PubSub:
        pubsub = self._client.pubsub()
        try:
            async with asyncio.timeout(10):
                await pubsub.subscribe(self._channel)
                # the reader handles a lost connection itself (logging it); without this the
                # client would reconnect silently inside get_message
                if pubsub.connection is not None:
                    self._saved_retry[pubsub] = pubsub.connection.retry
                    pubsub.connection.retry = Retry(NoBackoff(), 0)
                while True:  # events published after start() returns must reach us
                    message = await pubsub.get_message(timeout=None)
                    if message is not None and message["type"] == "subscribe":
                        return pubsub
        except BaseException:
            await self._disconnect(pubsub)
            raise

    async def _disconnect(self, pubsub: PubSub) -> None:
        saved = self._saved_retry.pop(pubsub, None)
        if saved is not None and pubsub.connection is not None:
            pubsub.connection.retry = saved  # the connection goes back to the client's pool
        try:
            # redis < 8 leaves aclose untyped, redis 8 types it: a typed name suits both
            close: Callable[[], Awaitable[None]] = pubsub.aclose
            await close()
        except (RedisError, OSError) as exc:
            logger.debug("closing the event channel connection failed", extra={"error": str(exc)})

    async def _read_forever(self) -> None:
        assert self._pubsub is not None
        pubsub = self._pubsub
        loop = asyncio.get_running_loop()
        ping_sent = False
        while True:
            try:
                asked_at = loop.time()
                message = await pubsub.get_message(timeout=self._IDLE_PING_SECONDS)
                if message is None:
                    if loop.time() - asked_at < self._IDLE_PING_SECONDS / 2:
                        continue  # the client's own health-check reply, not an idle channel
                    if ping_sent:  # a silent connection (no reply to our ping) is a dead one
                        raise TimeoutError("no reply from Redis to a ping")
                    await pubsub.ping()
                    ping_sent = True
                    continue
            except (RedisError, OSError) as exc:
                logger.warning(
                    "lost the Redis event channel; reconnecting",
                    extra={"channel": self._channel, "error": repr(exc)},
                )
                await self._disconnect(pubsub)
                self._pubsub = None
                pubsub = self._pubsub = await self._reconnect()
                logger.info("Redis event channel recovered", extra={"channel": self._channel})
                ping_sent = False
                continue
            ping_sent = False
            if message["type"] == "message":
                self._receive(message["data"])

    async def _reconnect(self) -> PubSub:
        delay = 0.05
        while True:
            try:
                return await self._connect()
            except (RedisError, OSError) as exc:
                logger.debug("event channel reconnect failed", extra={"error": repr(exc)})
            # jitter spreads the instances' reconnects; not security relevant
            await asyncio.sleep(delay * (0.5 + random.random()))  # noqa: S311
            delay = min(delay * 2, self._MAX_BACKOFF_SECONDS)

    def _receive(self, payload: bytes | str) -> None:
        """Dispatch a message: one event object, or an array of them (a writer's batch)."""
        try:
            decoded = json.loads(payload)
        except ValueError as exc:  # json.JSONDecodeError is a ValueError
            self._log_malformed(exc)
            return
        for item in decoded if isinstance(decoded, list) else [decoded]:
            try:
                event = Event.from_dict(item)
            except ValueError as exc:
                self._log_malformed(exc)
                continue
            self._dispatch(event)

    def _log_malformed(self, error: ValueError) -> None:
        logger.warning(
            "ignoring a malformed event from Redis",
            extra={"channel": self._channel, "error": str(error)},
        )
