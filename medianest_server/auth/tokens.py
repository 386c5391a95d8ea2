"""API credentials: personal API tokens, and short-lived JWT access tokens with refresh tokens.

Personal tokens (`mn_<prefix>_<secret>`) are random, shown once, stored as SHA-256 (they are
long and random, so a slow KDF adds nothing), revocable, with a last-used time.
Access tokens are JWTs signed with HS256 under a key id (`kid`) derived from `secret_key`;
only HS256 with a known kid is accepted, so `alg: none` and foreign keys are refused.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import jwt

from ..clock import SYSTEM_CLOCK, Clock
from ..db import Database
from ..errors import InvalidInput, Unauthorized
from ..secretbox import SecretBox
from ..usercache import UNCACHED, UserCache
from .models import User
from .sessions import digest
from .users import user_from_row

TOKEN_PREFIX = "mn_"  # noqa: S105 (a label, not a secret)
ACCESS_TOKEN_TTL = timedelta(minutes=15)
VERIFIED_TOKENS = 2_000  # about 1 KB each: a couple of MB at most
# last_used_at is written at most this often per token
TOUCH_INTERVAL = timedelta(seconds=60)


@dataclass(frozen=True)
class ApiTokenInfo:
    id: int
    user_id: int
    name: str
    prefix: str
    created_at: datetime
    last_used_at: datetime | None

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "name": self.name,
            "prefix": self.prefix,
            "created_at": self.created_at.isoformat(),
            "last_used_at": self.last_used_at.isoformat() if self.last_used_at else None,
        }


@dataclass(frozen=True)
class _Live:
    """What the credential cache keeps of a token."""

    info: ApiTokenInfo
    user: User
    expires_at: datetime | None


class ApiTokenService:
    def __init__(
        self, db: Database, *, clock: Clock = SYSTEM_CLOCK, cache: UserCache = UNCACHED
    ) -> None:
        self.db = db
        self.clock = clock
        self.cache = cache

    async def create(self, user_id: int, name: str) -> tuple[str, ApiTokenInfo]:
        """A new token; the returned secret is never stored or shown again."""
        name = name.strip()
        if not name or len(name) > 100:
            raise InvalidInput("name must be 1-100 characters", details={"name": ["Invalid."]})
        prefix = secrets.token_hex(4)
        raw = f"{TOKEN_PREFIX}{prefix}_{secrets.token_urlsafe(32)}"
        now = self.clock.now()
        token_id = await self.db.fetch_val(
            "INSERT INTO api_tokens (user_id, name, token_hash, token_prefix, created_at)"
            " VALUES (:user_id, :name, :hash, :prefix, :now) RETURNING id",
            {"user_id": user_id, "name": name, "hash": digest(raw), "prefix": prefix, "now": now},
        )
        return raw, ApiTokenInfo(int(token_id), user_id, name, prefix, now, None)

    async def resolve(self, raw: str) -> tuple[ApiTokenInfo, User] | None:
        token_hash = digest(raw)
        key = ("api_token", token_hash)

        async def load() -> _Live | None:
            row = await self.db.fetch_one(
                "SELECT t.id AS token_id, t.name, t.token_prefix, t.created_at AS token_created_at,"
                " t.last_used_at, t.expires_at, u.id, u.username, u.role, u.display_name,"
                " u.avatar_url, u.disabled FROM api_tokens t JOIN users u ON u.id = t.user_id"
                " WHERE t.token_hash = :hash AND t.revoked_at IS NULL AND NOT u.disabled",
                {"hash": token_hash},
            )
            if row is None:
                return None
            info = ApiTokenInfo(
                int(row["token_id"]),
                int(row["id"]),
                row["name"],
                row["token_prefix"],
                row["token_created_at"],
                row["last_used_at"],
            )
            return _Live(info, user_from_row(row), row["expires_at"])

        live = await self.cache.get_or_load(key, load, lambda found: found.info.user_id)
        if live is None:
            return None
        now = self.clock.now()
        if live.expires_at is not None and now >= live.expires_at:
            return None
        used = live.info.last_used_at
        if used is None or now - used >= TOUCH_INTERVAL:
            await self.db.execute(
                "UPDATE api_tokens SET last_used_at = :now WHERE id = :id",
                {"now": now, "id": live.info.id},
            )
            # the caller sees when it was used before this request, as before
            self.cache.replace(key, live, replace(live, info=replace(live.info, last_used_at=now)))
        return live.info, live.user

    async def list_for_user(self, user_id: int) -> list[ApiTokenInfo]:
        rows = await self.db.fetch_all(
            "SELECT id, user_id, name, token_prefix, created_at, last_used_at FROM api_tokens"
            " WHERE user_id = :user_id AND revoked_at IS NULL ORDER BY created_at DESC",
            {"user_id": user_id},
        )
        return [
            ApiTokenInfo(
                int(r["id"]),
                int(r["user_id"]),
                r["name"],
                r["token_prefix"],
                r["created_at"],
                r["last_used_at"],
            )
            for r in rows
        ]

    async def revoke(self, token_id: int, *, user_id: int) -> bool:
        """Revoke one of the user's tokens; another user's id answers False, as if absent."""
        changed = await self.db.execute(
            "UPDATE api_tokens SET revoked_at = :now WHERE id = :id AND user_id = :user_id"
            " AND revoked_at IS NULL",
            {"now": self.clock.now(), "id": token_id, "user_id": user_id},
        )
        if changed:
            await self.cache.changed(user_id)
        return changed > 0

    async def revoke_all(self, user_id: int) -> int:
        """Revoke every token of the user (password changed, account disabled); how many."""
        changed = await self.db.execute(
            "UPDATE api_tokens SET revoked_at = :now WHERE user_id = :user_id"
            " AND revoked_at IS NULL",
            {"now": self.clock.now(), "user_id": user_id},
        )
        if changed:
            await self.cache.changed(user_id)
        return changed


class AccessTokens:
    """Short-lived JWTs for API clients, tied to an API session (revoking it ends them)."""

    ALGORITHM = "HS256"

    def __init__(self, box: SecretBox, *, clock: Clock = SYSTEM_CLOCK) -> None:
        key = box.derive_key("jwt signing v1")
        # the key id names the key without revealing it: a new secret_key is a new kid
        self.kid = hashlib.sha256(b"kid:" + key).hexdigest()[:16]
        self._keys = {self.kid: key}
        self.clock = clock
        # tokens whose signature, key id and type already checked out: a client sends the same
        # token with every request for its lifetime (expiry is still checked every time)
        self._verified: dict[str, dict[str, Any]] = {}

    def issue(self, user: User, session_id: str) -> tuple[str, int]:
        now = self.clock.now()
        expires_in = int(ACCESS_TOKEN_TTL.total_seconds())
        claims = {
            "sub": str(user.id),
            "sid": session_id,
            "iat": int(now.timestamp()),
            "exp": int(now.timestamp()) + expires_in,
            "typ": "access",
            "jti": secrets.token_urlsafe(12),
        }
        token = jwt.encode(
            claims, self._keys[self.kid], algorithm=self.ALGORITHM, headers={"kid": self.kid}
        )
        return token, expires_in

    def verify(self, token: str) -> dict[str, Any]:
        """The claims of a valid token; Unauthorized names what is wrong otherwise.

        Parsed once: signature, algorithm (HS256 only, so `alg: none` fails), the key id in
        the verified header, then expiry. A token verified before skips to the expiry check
        (the same string, so the same signature); at most VERIFIED_TOKENS are remembered.
        """
        known = self._verified.get(token)
        if known is not None:
            self._check_expiry(known)
            return dict(known)
        claims = self._decode(token)
        if len(self._verified) >= VERIFIED_TOKENS:
            del self._verified[next(iter(self._verified))]  # the oldest
        self._verified[token] = claims
        return dict(claims)

    def _check_expiry(self, claims: Mapping[str, Any]) -> None:
        if self.clock.now().timestamp() >= claims["exp"]:
            raise Unauthorized("access token expired; refresh it")

    def _decode(self, token: str) -> dict[str, Any]:
        try:
            decoded = jwt.api_jwt.decode_complete(
                token,
                self._keys[self.kid],
                algorithms=[self.ALGORITHM],
                # expiry is checked below against our clock (tests move it), not time.time()
                options={
                    "require": ["exp", "iat", "sub", "sid"],
                    "verify_exp": False,
                    "verify_iat": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("invalid access token") from exc
        header = decoded["header"]
        if header.get("kid") not in self._keys or header.get("alg") != self.ALGORITHM:
            raise Unauthorized("access token signed with an unknown key or algorithm")
        claims: dict[str, Any] = decoded["payload"]
        exp = claims["exp"]
        if not isinstance(exp, int | float) or isinstance(exp, bool):
            raise Unauthorized("invalid access token")
        self._check_expiry(claims)
        if claims.get("typ") != "access":
            raise Unauthorized("not an access token")
        return claims


def looks_like_api_token(value: str) -> bool:
    return value.startswith(TOKEN_PREFIX) and value.count("_") >= 2
