"""Sign-in limits: 5 failures per 15 minutes per account and per address, then a growing block.

Built on the shared RateLimiter, so the limits hold across instances when Redis is configured.
Over the limit the answer is an immediate 429 with Retry-After; nothing is held open.
"""

from __future__ import annotations

from ..errors import RateLimited
from ..ratelimit import RateLimiter

FAILURES = 5
WINDOW_SECONDS = 15 * 60
MAX_BLOCK_SECONDS = 24 * 3600
_TRIP_WINDOW_SECONDS = 24 * 3600
_MAX_TRIPS = 32


class LoginLimits:
    def __init__(self, limiter: RateLimiter, *, scope: str = "login") -> None:
        self.limiter = limiter
        self.scope = scope

    def _keys(self, username: str, ip: str | None) -> list[str]:
        """Per account and per address; an empty username limits by address only."""
        keys = [f"{self.scope}:account:{username.strip().lower()}"] if username.strip() else []
        if ip:
            keys.append(f"{self.scope}:ip:{ip}")
        return keys

    async def check(self, username: str, ip: str | None) -> None:
        """Raise RateLimited while the account or the address is blocked."""
        for key in self._keys(username, ip):
            block = await self.limiter.peek(
                f"{key}:block", limit=1, window_seconds=MAX_BLOCK_SECONDS
            )
            if not block.allowed or block.remaining == 0:
                raise RateLimited(
                    "too many failed sign-ins; try again later",
                    retry_after=block.reset_after,
                    headers=_limited_headers(block.reset_after),
                )

    async def failed(self, username: str, ip: str | None) -> None:
        """Count a failure; the fifth in the window blocks for 15 min, doubling each time."""
        for key in self._keys(username, ip):
            result = await self.limiter.hit(key, limit=FAILURES, window_seconds=WINDOW_SECONDS)
            if result.allowed and result.remaining > 0:
                continue
            # each trip is remembered for a whole day: the limiter drains one unit per
            # window/limit, so the window is the limit times a day
            trips = await self.limiter.hit(
                f"{key}:trips", limit=_MAX_TRIPS, window_seconds=_MAX_TRIPS * _TRIP_WINDOW_SECONDS
            )
            count = _MAX_TRIPS - trips.remaining
            seconds = min(WINDOW_SECONDS * 2 ** max(count - 1, 0), MAX_BLOCK_SECONDS)
            await self.limiter.reset(f"{key}:block")
            await self.limiter.hit(f"{key}:block", limit=1, window_seconds=seconds)
            await self.limiter.reset(key)

    async def succeeded(self, username: str) -> None:
        for key in self._keys(username, None):
            await self.limiter.reset(key)


def _limited_headers(retry_after: float) -> dict[str, str]:
    seconds = max(1, int(retry_after + 0.999))
    return {
        "Retry-After": str(seconds),
        "X-RateLimit-Limit": str(FAILURES),
        "X-RateLimit-Remaining": "0",
        "X-RateLimit-Reset": str(seconds),
    }
