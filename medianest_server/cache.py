"""The cache: JSON values with a TTL, in process (`MemoryCache`) or shared in Redis (`RedisCache`).

Each plugin gets `cache.namespace("<plugin>")`, a view whose keys are prefixed `"<plugin>:"`.
Values are JSON (dict, list, str, int, float, bool); both backends store the JSON text, so a value
read back is always a fresh copy and equal on either backend (tuples come back as lists).
`None` means "not cached": `get` returns it on a miss, and it is never stored.

`get_or_load` is single-flight: concurrent misses for one key make one loader call per process,
and with Redis one per key across every instance (a short lock; the others wait for the value).
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import secrets
from abc import ABC, abstractmethod
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from medianest_server.clock import SYSTEM_CLOCK, Clock
from medianest_server.singleflight import SingleFlight

logger = logging.getLogger(__name__)

Loader = Callable[[], Awaitable[Any]]

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)

# delete the lock only if we still hold it (it may have expired and been taken by another instance)
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
    return redis.call('DEL', KEYS[1])
end
return 0
"""


# store only if nothing live is there: the stored value carries its expiry ("<ms>|<json>"), so an
# entry expired by the injected clock counts as absent even while Redis still holds it
_ADD = """
local current = redis.call('GET', KEYS[1])
if current then
    local expires = tonumber(string.match(current, '^(%d+)|'))
    if expires and expires > tonumber(ARGV[2]) then
        return 0
    end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return 1
"""


def _encode(value: Any) -> str:
    """JSON text of `value`; TypeError/ValueError if it is not plain JSON (NaN included)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def _check_ttl(ttl_seconds: float) -> None:
    if not (ttl_seconds > 0 and math.isfinite(ttl_seconds)):
        raise ValueError(f"ttl_seconds must be a positive number, not {ttl_seconds!r}")


class Cache(ABC):
    """A key/value cache of JSON values with a time to live; see the module docstring."""

    @abstractmethod
    async def get(self, key: str) -> Any | None:
        """The value stored under `key`, or None if there is none or it has expired."""

    @abstractmethod
    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        """Store `value` (JSON-serialisable) for `ttl_seconds`; storing None deletes the key."""

    @abstractmethod
    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        """Store `value` for `ttl_seconds` only if `key` holds nothing live; True if it did.

        Atomic (with Redis, across instances): use it to claim a piece of work once, e.g. an
        event that every instance receives.
        """

    @abstractmethod
    async def delete(self, key: str) -> None:
        """Forget `key` (no error if it is not there)."""

    @abstractmethod
    async def delete_prefix(self, prefix: str) -> int:
        """Forget every key starting with `prefix` (e.g. one user's entries); returns how many."""

    @abstractmethod
    async def get_or_load(self, key: str, loader: Loader, ttl_seconds: float) -> Any:
        """The cached value of `key`, or `await loader()` stored for `ttl_seconds` on a miss.

        Concurrent misses share one loader call (per process; with Redis, across instances).
        A loader exception is not cached and reaches every caller waiting on that call. A loader
        returning None is returned as is and not cached.
        """

    def namespace(self, prefix: str) -> Cache:
        """A view of this cache whose keys are all prefixed with `"<prefix>:"`."""
        return NamespacedCache(self, prefix)

    @abstractmethod
    async def close(self) -> None:
        """Release the backend's resources."""


class NamespacedCache(Cache):
    """A prefix view over another cache; closing it leaves the underlying cache open."""

    def __init__(self, parent: Cache, prefix: str) -> None:
        if not prefix:
            raise ValueError("a cache namespace needs a non-empty prefix")
        self._parent = parent
        self.prefix = prefix + ":"

    async def get(self, key: str) -> Any | None:
        return await self._parent.get(self.prefix + key)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        await self._parent.set(self.prefix + key, value, ttl_seconds)

    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        return await self._parent.add(self.prefix + key, value, ttl_seconds)

    async def delete(self, key: str) -> None:
        await self._parent.delete(self.prefix + key)

    async def delete_prefix(self, prefix: str) -> int:
        return await self._parent.delete_prefix(self.prefix + prefix)

    async def get_or_load(self, key: str, loader: Loader, ttl_seconds: float) -> Any:
        return await self._parent.get_or_load(self.prefix + key, loader, ttl_seconds)

    def namespace(self, prefix: str) -> Cache:
        if not prefix:
            raise ValueError("a cache namespace needs a non-empty prefix")
        return NamespacedCache(self._parent, self.prefix + prefix)

    async def close(self) -> None:
        """Nothing to release: the cache this is a view of is closed by its owner."""


class MemoryCache(Cache):
    """An in-process LRU cache bounded to `max_entries`, expiring by `clock.monotonic()`."""

    def __init__(self, *, max_entries: int = 10_000, clock: Clock = SYSTEM_CLOCK) -> None:
        if max_entries < 1:
            raise ValueError(f"max_entries must be at least 1, not {max_entries}")
        self._max_entries = max_entries
        self._clock = clock
        # key -> (JSON text, monotonic expiry), least recently used first
        self._entries: OrderedDict[str, tuple[str, float]] = OrderedDict()
        self._flight: SingleFlight[str, str] = SingleFlight()

    def __len__(self) -> int:
        return len(self._entries)

    def _get_raw(self, key: str) -> str | None:
        entry = self._entries.get(key)
        if entry is None:
            return None
        raw, expires_at = entry
        if self._clock.monotonic() >= expires_at:
            del self._entries[key]
            return None
        self._entries.move_to_end(key)
        return raw

    def _set_raw(self, key: str, raw: str, ttl_seconds: float) -> None:
        self._entries[key] = (raw, self._clock.monotonic() + ttl_seconds)
        self._entries.move_to_end(key)
        while len(self._entries) > self._max_entries:
            self._entries.popitem(last=False)

    async def get(self, key: str) -> Any | None:
        raw = self._get_raw(key)
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        if value is None:
            self._entries.pop(key, None)
            return
        self._set_raw(key, _encode(value), ttl_seconds)

    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        raw = _encode(value)
        if value is None or self._get_raw(key) is not None:
            return False
        self._set_raw(key, raw, ttl_seconds)
        return True

    async def delete(self, key: str) -> None:
        self._entries.pop(key, None)

    async def delete_prefix(self, prefix: str) -> int:
        now = self._clock.monotonic()
        removed = 0
        for key in [k for k in self._entries if k.startswith(prefix)]:
            _, expires_at = self._entries.pop(key)
            removed += expires_at > now  # expired entries were already gone for readers
        return removed

    async def get_or_load(self, key: str, loader: Loader, ttl_seconds: float) -> Any:
        _check_ttl(ttl_seconds)
        raw = self._get_raw(key)
        if raw is None:
            raw = await self._flight.run(key, lambda: self._load(key, loader, ttl_seconds))
        # decoded per caller, so callers sharing one load never share one mutable object
        return json.loads(raw)

    async def _load(self, key: str, loader: Loader, ttl_seconds: float) -> str:
        value = await loader()
        raw = _encode(value)
        if value is not None:
            self._set_raw(key, raw, ttl_seconds)
        return raw

    async def close(self) -> None:
        self._entries.clear()


class RedisCache(Cache):
    """A cache shared by every instance, in Redis under `prefix`.

    Redis expires keys with PX; each value also carries its expiry by `clock.now()`, so an
    injected clock (tests) expires entries the same way as on `MemoryCache`. The client is
    closed by `close()` only if `owns_client`. `get_or_load` takes a lock key for `lock_seconds`
    (`<prefix without ':'>-lock:<key>`) while loading; other instances poll for the value every
    `poll_interval_seconds` until it appears or the lock is gone, then load themselves.
    """

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "medianest:cache:",
        clock: Clock = SYSTEM_CLOCK,
        owns_client: bool = False,
        lock_seconds: float = 5.0,
        poll_interval_seconds: float = 0.05,
    ) -> None:
        if not (lock_seconds > 0 and poll_interval_seconds > 0):
            raise ValueError("lock_seconds and poll_interval_seconds must be positive")
        self._client = client
        self._prefix = prefix
        self._lock_prefix = prefix.rstrip(":") + "-lock:"
        self._clock = clock
        self._owns_client = owns_client
        self._lock_ms = max(1, math.ceil(lock_seconds * 1000))
        self._poll_interval = poll_interval_seconds
        # a waiter gives up on the lock holder after about twice the lock's lifetime
        self._max_polls = math.ceil(2 * lock_seconds / poll_interval_seconds)
        self._release_lock = client.register_script(_RELEASE_LOCK)
        self._add = client.register_script(_ADD)
        self._flight: SingleFlight[str, str] = SingleFlight()

    def _now_ms(self) -> int:
        return (self._clock.now() - _EPOCH) // _MILLISECOND

    async def _get_raw(self, full_key: str) -> str | None:
        stored = await self._client.get(full_key)
        if stored is None:
            return None
        text = stored.decode() if isinstance(stored, bytes) else str(stored)
        expires_at, _, raw = text.partition("|")
        try:
            if int(expires_at) <= self._now_ms():
                return None
        except ValueError:
            logger.warning("ignoring a malformed cache entry", extra={"cache_key": full_key})
            return None
        return raw

    async def _set_raw(self, full_key: str, raw: str, ttl_seconds: float) -> None:
        ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        await self._client.set(full_key, f"{self._now_ms() + ttl_ms}|{raw}", px=ttl_ms)

    async def get(self, key: str) -> Any | None:
        raw = await self._get_raw(self._prefix + key)
        return None if raw is None else json.loads(raw)

    async def set(self, key: str, value: Any, ttl_seconds: float) -> None:
        _check_ttl(ttl_seconds)
        if value is None:
            await self.delete(key)
            return
        await self._set_raw(self._prefix + key, _encode(value), ttl_seconds)

    async def add(self, key: str, value: Any, ttl_seconds: float) -> bool:
        _check_ttl(ttl_seconds)
        raw = _encode(value)
        if value is None:
            return False
        now = self._now_ms()
        ttl_ms = max(1, math.ceil(ttl_seconds * 1000))
        stored = await self._add(
            keys=[self._prefix + key], args=[f"{now + ttl_ms}|{raw}", now, ttl_ms]
        )
        return bool(stored)

    async def delete(self, key: str) -> None:
        await self._client.unlink(self._prefix + key)

    async def delete_prefix(self, prefix: str) -> int:
        pattern = _glob_escape(self._prefix + prefix) + "*"
        removed = 0
        batch: list[Any] = []
        async for key in self._client.scan_iter(match=pattern, count=500):
            batch.append(key)
            if len(batch) >= 500:
                removed += await self._client.unlink(*batch)
                batch = []
        if batch:
            removed += await self._client.unlink(*batch)
        return removed

    async def get_or_load(self, key: str, loader: Loader, ttl_seconds: float) -> Any:
        _check_ttl(ttl_seconds)
        full_key = self._prefix + key
        # hits share the flight too: N concurrent callers cost one GET and one pool connection
        raw = await self._flight.run(
            full_key, lambda: self._get_or_load_once(full_key, loader, ttl_seconds)
        )
        return json.loads(raw)

    async def _get_or_load_once(self, full_key: str, loader: Loader, ttl_seconds: float) -> str:
        """The stored JSON text, else load under the cross-instance lock or wait for its holder."""
        raw = await self._get_raw(full_key)
        if raw is not None:
            return raw
        lock_key = self._lock_prefix + full_key.removeprefix(self._prefix)
        token = secrets.token_hex(16)
        for _ in range(self._max_polls):
            if await self._client.set(lock_key, token, nx=True, px=self._lock_ms):
                try:
                    # the previous holder may have stored it between our miss and our lock
                    raw = await self._get_raw(full_key)
                    if raw is None:
                        raw = await self._load(full_key, loader, ttl_seconds)
                    return raw
                finally:
                    await self._unlock(lock_key, token)
            raw = await self._get_raw(full_key)
            if raw is not None:
                return raw
            await asyncio.sleep(self._poll_interval)
        logger.warning(
            "cache lock holder took too long; loading without the lock",
            extra={"cache_key": full_key},
        )
        return await self._load(full_key, loader, ttl_seconds)

    async def _load(self, full_key: str, loader: Loader, ttl_seconds: float) -> str:
        value = await loader()
        raw = _encode(value)
        if value is not None:
            await self._set_raw(full_key, raw, ttl_seconds)
        return raw

    async def _unlock(self, lock_key: str, token: str) -> None:
        try:
            await self._release_lock(keys=[lock_key], args=[token])
        except RedisError:
            # the lock expires by itself; the loader's own outcome matters more than this
            logger.warning("could not release a cache lock", extra={"cache_key": lock_key})

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()


def _glob_escape(text: str) -> str:
    """`text` with Redis glob specials escaped, for an exact-prefix SCAN MATCH."""
    return "".join("\\" + c if c in "*?[]\\" else c for c in text)
