"""Sign-in limits: 5 failures per 15 minutes per account and per address, then a growing block.

Built on the shared RateLimiter, so the limits hold across instances when Redis is configured.
Over the limit the answer is an immediate 429 with Retry-After; nothing is held open.

Each guess is counted *before* the secret is checked (Argon2 takes ~150 ms, long enough for a
burst of parallel guesses to slip past a check-then-count): `attempt()` reserves one unit per
key atomically, and gives it back when the guess was right (or failed for a reason that does
not count). So a burst of 100 parallel guesses gets 5 evaluated and 95 refused with 429.

Usernames are compared in one normal form (`normalize_username`), so `tİki`, `TIKI` and
`tiki` share one budget, as they share one account.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from ..errors import RateLimited
from ..ratelimit import RateLimiter
from .names import normalize_username

FAILURES = 5
WINDOW_SECONDS = 15 * 60
MAX_BLOCK_SECONDS = 24 * 3600
_TRIP_WINDOW_SECONDS = 24 * 3600
_MAX_TRIPS = 32


@dataclass(frozen=True)
class _Reserved:
    key: str
    last: bool  # this guess took the budget's last unit: if it fails, it trips the block
    account: bool


class LoginLimits:
    def __init__(self, limiter: RateLimiter, *, scope: str = "login") -> None:
        self.limiter = limiter
        self.scope = scope

    def _keys(self, username: str, ip: str | None) -> list[tuple[str, bool]]:
        """(key, is the account's) per account and per address; an empty username limits by
        address only."""
        name = normalize_username(username)
        keys = [(f"{self.scope}:account:{name}", True)] if name else []
        if ip:
            keys.append((f"{self.scope}:ip:{ip}", False))
        return keys

    async def check(self, username: str, ip: str | None) -> None:
        """Raise RateLimited while the account or the address is blocked."""
        for key, _ in self._keys(username, ip):
            block = await self.limiter.peek(
                f"{key}:block", limit=1, window_seconds=MAX_BLOCK_SECONDS
            )
            if not block.allowed or block.remaining == 0:
                raise RateLimited(
                    "too many failed sign-ins; try again later",
                    retry_after=block.reset_after,
                    headers=_limited_headers(block.reset_after),
                )

    @asynccontextmanager
    async def attempt(
        self,
        username: str,
        ip: str | None,
        *,
        counts: Callable[[Exception], bool] = lambda exc: True,
    ) -> AsyncIterator[None]:
        """One guess, counted before the body checks it:

            async with limits.attempt(username, ip, counts=wrong_password):
                user = await users.authenticate(username, password)

        Raises RateLimited (nothing evaluated) while blocked or over the budget. A body that
        raises an exception `counts` accepts is a failed guess (the fifth blocks); a body that
        completes, or fails for another reason, gives its unit back.
        """
        reserved = await self._reserve(username, ip)
        try:
            yield
        except Exception as exc:
            if counts(exc):
                await self._failed(reserved)
            else:
                await self._give_back(reserved)
            raise
        except BaseException:
            await self._give_back(reserved)
            raise
        await self._succeeded(reserved)

    async def _reserve(self, username: str, ip: str | None) -> list[_Reserved]:
        await self.check(username, ip)
        taken: list[_Reserved] = []
        for key, account in self._keys(username, ip):
            result = await self.limiter.hit(key, limit=FAILURES, window_seconds=WINDOW_SECONDS)
            if not result.allowed:
                await self._give_back(taken)
                raise RateLimited(
                    "too many failed sign-ins; try again later",
                    retry_after=result.retry_after,
                    headers=_limited_headers(result.retry_after),
                )
            taken.append(_Reserved(key, result.remaining == 0, account))
        return taken

    async def _give_back(self, reserved: list[_Reserved]) -> None:
        for entry in reserved:
            await self.limiter.release(entry.key, limit=FAILURES, window_seconds=WINDOW_SECONDS)

    async def _failed(self, reserved: list[_Reserved]) -> None:
        """The guess was wrong: it stays counted; the one that used the last unit blocks."""
        for entry in reserved:
            if entry.last:
                await self._trip(entry.key)

    async def _succeeded(self, reserved: list[_Reserved]) -> None:
        """The guess was right: the account's failures are forgiven, the address's unit back."""
        for entry in reserved:
            if entry.account:
                await self.limiter.reset(entry.key)
            else:
                await self.limiter.release(entry.key, limit=FAILURES, window_seconds=WINDOW_SECONDS)

    async def _trip(self, key: str) -> None:
        """Block `key` for 15 min, doubling with each trip in a day (at most a day)."""
        # each trip is remembered for a whole day: the limiter drains one unit per window/limit,
        # so the window is the limit times a day
        trips = await self.limiter.hit(
            f"{key}:trips", limit=_MAX_TRIPS, window_seconds=_MAX_TRIPS * _TRIP_WINDOW_SECONDS
        )
        count = _MAX_TRIPS - trips.remaining
        seconds = min(WINDOW_SECONDS * 2 ** max(count - 1, 0), MAX_BLOCK_SECONDS)
        await self.limiter.reset(f"{key}:block")
        await self.limiter.hit(f"{key}:block", limit=1, window_seconds=seconds)
        await self.limiter.reset(key)


def _limited_headers(retry_after: float) -> dict[str, str]:
    seconds = max(1, int(retry_after + 0.999))
    return {
        "Retry-After": str(seconds),
        "X-RateLimit-Limit": str(FAILURES),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(seconds),
    }
