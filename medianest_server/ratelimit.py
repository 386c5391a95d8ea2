"""Rate limits: "at most `limit` per `window_seconds`", per key, in process or shared in Redis.

Both backends run the same rule, GCRA (the generic cell rate algorithm): a sliding window with
no burst at window edges. Each key stores one timestamp, the "theoretical arrival time" (TAT):
every allowed unit pushes it `window / limit` later, and a hit is refused while that would put it
more than one window ahead of now. So `limit` hits pass at once, then one more each
`window / limit`, and after a full idle window the whole budget is back. Times are integer
microseconds; the window is rounded up to a multiple of `limit` microseconds.

`MemoryRateLimiter` counts by `clock.monotonic()`; `RedisRateLimiter` by `clock.now()` (shared by
every instance), updating the TAT in one Lua script so the limit holds across instances.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import redis.asyncio as aioredis

from medianest_server.clock import SYSTEM_CLOCK, Clock

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_US = 1_000_000

# The same rule as `_decide` below, atomically. Integers stay exact: Lua numbers are doubles and
# the values (epoch microseconds) are far below 2**53; "%d" keeps them out of exponent notation.
_GCRA_SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local burst = tonumber(ARGV[3])
local cost = tonumber(ARGV[4])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil or tat < now then
    tat = now
end
local new_tat = tat + interval * cost
if new_tat - burst > now then
    return {0, string.format('%d', tat)}
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return {1, string.format('%d', new_tat)}
"""


# Give back `cost` units: move the TAT back by their interval; a TAT no later than now is a full
# budget, so the key goes.
_RELEASE_SCRIPT = """
local now = tonumber(ARGV[1])
local interval = tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local tat = tonumber(redis.call('GET', KEYS[1]))
if tat == nil then
    return 0
end
local new_tat = tat - interval * cost
if new_tat <= now then
    redis.call('DEL', KEYS[1])
    return 1
end
local ttl_ms = math.ceil((new_tat - now) / 1000)
redis.call('SET', KEYS[1], string.format('%d', new_tat), 'PX', string.format('%d', ttl_ms))
return 1
"""


@dataclass(frozen=True)
class RateLimitResult:
    """The outcome of a hit (or a peek). Times are seconds."""

    allowed: bool
    limit: int
    remaining: int
    reset_after: float  # until the full budget is back
    retry_after: float  # until this request would be allowed; 0 when allowed

    def headers(self) -> dict[str, str]:
        """The X-RateLimit-* headers, plus Retry-After when refused (whole seconds, rounded up)."""
        headers = {
            "X-RateLimit-Limit": str(self.limit),
            "X-RateLimit-Remaining": str(self.remaining),
            "X-RateLimit-Reset": str(math.ceil(self.reset_after)),
        }
        if not self.allowed:
            headers["Retry-After"] = str(max(1, math.ceil(self.retry_after)))
        return headers


@dataclass(frozen=True)
class _Rate:
    limit: int
    window_seconds: float
    interval: int  # microseconds one unit occupies
    burst: int  # how far (microseconds) the TAT may run ahead of now: limit * interval


def _rate(limit: int, window_seconds: float, cost: int = 1) -> _Rate:
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    if not (window_seconds > 0 and math.isfinite(window_seconds)):
        raise ValueError(f"window_seconds must be a positive number, not {window_seconds!r}")
    if not 1 <= cost <= limit:
        raise ValueError(f"cost must be between 1 and the limit ({limit}), not {cost}")
    window = max(1, round(window_seconds * _US))
    interval = -(-window // limit)
    return _Rate(limit, window_seconds, interval, interval * limit)


def _decide(stored_tat: int | None, now: int, rate: _Rate, cost: int) -> tuple[bool, int]:
    """(allowed, TAT after the decision): the rule `_GCRA_SCRIPT` runs in Redis."""
    tat = now if stored_tat is None or stored_tat < now else stored_tat
    new_tat = tat + rate.interval * cost
    if new_tat - rate.burst > now:
        return False, tat
    return True, new_tat


def _result(allowed: bool, tat: int, now: int, rate: _Rate, cost: int) -> RateLimitResult:
    ahead = max(0, tat - now)
    retry_after = 0.0
    if not allowed:
        retry_after = (tat + rate.interval * cost - rate.burst - now) / _US
    return RateLimitResult(
        allowed=allowed,
        limit=rate.limit,
        remaining=max(0, (rate.burst - ahead) // rate.interval),
        # the rounded-up window may exceed the asked one by a few microseconds: don't show it
        reset_after=min(ahead / _US, rate.window_seconds),
        retry_after=retry_after,
    )


def _peek(stored_tat: int | None, now: int, rate: _Rate) -> RateLimitResult:
    tat = now if stored_tat is None or stored_tat < now else stored_tat
    return _result(tat + rate.interval - rate.burst <= now, tat, now, rate, 1)


class RateLimiter(ABC):
    """Counts hits per key against "`limit` per `window_seconds`"; see the module docstring."""

    @abstractmethod
    async def hit(
        self, key: str, *, limit: int, window_seconds: float, cost: int = 1
    ) -> RateLimitResult:
        """Count `cost` units for `key` if they fit in the budget; a refused hit counts nothing.

        Raises ValueError unless `1 <= cost <= limit` and `window_seconds > 0`.
        """

    @abstractmethod
    async def peek(self, key: str, *, limit: int, window_seconds: float) -> RateLimitResult:
        """Would one more unit be allowed? Counts nothing (e.g. check a sign-in block first)."""

    @abstractmethod
    async def release(self, key: str, *, limit: int, window_seconds: float, cost: int = 1) -> None:
        """Give back `cost` units an earlier `hit` counted (a reserved attempt that turned out
        not to count), atomically. Never more than the full budget."""

    @abstractmethod
    async def reset(self, key: str) -> None:
        """Give `key` its full budget back (e.g. after a successful sign-in)."""

    @abstractmethod
    async def close(self) -> None:
        """Release the backend's resources."""


class MemoryRateLimiter(RateLimiter):
    """Per-process limits. Keys whose budget is full again are dropped, so memory stays bounded
    by the keys active within their window."""

    _MIN_SWEEP = 1024

    def __init__(self, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self._clock = clock
        self._tats: dict[str, int] = {}
        self._next_sweep = self._MIN_SWEEP

    def __len__(self) -> int:
        return len(self._tats)

    def _now(self) -> int:
        return round(self._clock.monotonic() * _US)

    async def hit(
        self, key: str, *, limit: int, window_seconds: float, cost: int = 1
    ) -> RateLimitResult:
        rate = _rate(limit, window_seconds, cost)
        now = self._now()
        allowed, tat = _decide(self._tats.get(key), now, rate, cost)
        if allowed:
            self._tats[key] = tat
            if len(self._tats) >= self._next_sweep:
                self._sweep(now)
        return _result(allowed, tat, now, rate, cost)

    def _sweep(self, now: int) -> None:
        # a TAT in the past means a full budget, the same as no entry; amortised O(1) per hit
        self._tats = {key: tat for key, tat in self._tats.items() if tat > now}
        self._next_sweep = max(self._MIN_SWEEP, 2 * len(self._tats))

    async def peek(self, key: str, *, limit: int, window_seconds: float) -> RateLimitResult:
        return _peek(self._tats.get(key), self._now(), _rate(limit, window_seconds))

    async def release(self, key: str, *, limit: int, window_seconds: float, cost: int = 1) -> None:
        rate = _rate(limit, window_seconds, cost)
        tat = self._tats.get(key)
        if tat is None:
            return
        tat -= rate.interval * cost
        if tat <= self._now():
            del self._tats[key]
        else:
            self._tats[key] = tat

    async def reset(self, key: str) -> None:
        self._tats.pop(key, None)

    async def close(self) -> None:
        self._tats.clear()


class RedisRateLimiter(RateLimiter):
    """Limits shared by every instance, one Redis key per limited key (`prefix + key`), which
    expires when its budget is full again. The script runs by EVALSHA, loaded again if Redis
    forgot it. The client is closed by `close()` only if `owns_client`."""

    def __init__(
        self,
        client: aioredis.Redis,
        *,
        prefix: str = "medianest:rl:",
        clock: Clock = SYSTEM_CLOCK,
        owns_client: bool = False,
    ) -> None:
        self._client = client
        self._prefix = prefix
        self._clock = clock
        self._owns_client = owns_client
        self._script = client.register_script(_GCRA_SCRIPT)
        self._release = client.register_script(_RELEASE_SCRIPT)

    def _now(self) -> int:
        return (self._clock.now() - _EPOCH) // _MICROSECOND

    async def hit(
        self, key: str, *, limit: int, window_seconds: float, cost: int = 1
    ) -> RateLimitResult:
        rate = _rate(limit, window_seconds, cost)
        now = self._now()
        allowed, tat = await self._script(
            keys=[self._prefix + key], args=[now, rate.interval, rate.burst, cost]
        )
        return _result(bool(allowed), int(tat), now, rate, cost)

    async def peek(self, key: str, *, limit: int, window_seconds: float) -> RateLimitResult:
        rate = _rate(limit, window_seconds)
        stored = await self._client.get(self._prefix + key)
        return _peek(None if stored is None else int(stored), self._now(), rate)

    async def release(self, key: str, *, limit: int, window_seconds: float, cost: int = 1) -> None:
        rate = _rate(limit, window_seconds, cost)
        await self._release(keys=[self._prefix + key], args=[self._now(), rate.interval, cost])

    async def reset(self, key: str) -> None:
        await self._client.unlink(self._prefix + key)

    async def close(self) -> None:
        if self._owns_client:
            await self._client.aclose()
