"""Sessions: one row per signed-in device (browser) or API client, revocable at any time.

Only a SHA-256 of each session secret is stored; the secret lives in the browser's cookie or,
for API clients, inside the refresh token. A session ends when revoked, idle for too long, past
its absolute lifetime, or when its user is disabled or deleted: every request checks all four.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Literal

from aiohttp import web
from aiohttp_session import AbstractStorage, Session

from ..clock import SYSTEM_CLOCK, Clock
from ..db import Database, Row
from ..errors import Unauthorized
from ..usercache import UNCACHED, UserCache
from .models import User
from .users import user_from_row

SessionKind = Literal["browser", "api"]
# last_seen is written at most this often per session: a page view is not a database write
TOUCH_INTERVAL = timedelta(seconds=60)
SESSION_COOKIE = "medianest_session"


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


@dataclass(frozen=True)
class SessionInfo:
    id: str
    user_id: int
    kind: SessionKind
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ip: str | None
    user_agent: str | None

    def as_dict(self, *, current_id: str | None = None) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "created_at": self.created_at.isoformat(),
            "last_seen_at": self.last_seen_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
            "ip": self.ip,
            "user_agent": self.user_agent,
            "current": self.id == current_id,
        }


_SESSION_COLUMNS = (
    "s.id AS session_id, s.user_id, s.kind, s.created_at AS session_created_at, s.last_seen_at,"
    " s.expires_at, s.idle_expires_at, s.ip, s.user_agent, s.data, s.refresh_token_hash,"
    " u.id, u.username, u.role, u.display_name, u.avatar_url, u.disabled"
)


@dataclass(frozen=True)
class _Live:
    """What the credential cache keeps of a session."""

    info: SessionInfo
    user: User
    data: dict[str, Any]
    idle_expires_at: datetime


def _info(row: Row) -> SessionInfo:
    return SessionInfo(
        id=row["session_id"],
        user_id=int(row["user_id"]),
        kind=row["kind"],
        created_at=row["session_created_at"],
        last_seen_at=row["last_seen_at"],
        expires_at=row["expires_at"],
        ip=row["ip"],
        user_agent=row["user_agent"],
    )


class SessionService:
    def __init__(
        self,
        db: Database,
        *,
        idle: timedelta,
        absolute: timedelta,
        clock: Clock = SYSTEM_CLOCK,
        refresh_key: bytes | None = None,
        cache: UserCache = UNCACHED,
    ) -> None:
        self.db = db
        self.cache = cache
        self.idle = idle
        self.absolute = absolute
        self.clock = clock
        self.refresh_key = refresh_key

    async def create(
        self,
        user_id: int,
        *,
        kind: SessionKind,
        ip: str | None,
        user_agent: str | None,
        data: dict[str, Any] | None = None,
    ) -> tuple[str, SessionInfo]:
        """Start a session; returns its secret (shown to the client once) and its record."""
        secret = secrets.token_urlsafe(32)
        now = self.clock.now()
        info = SessionInfo(
            id=digest(secret),
            user_id=user_id,
            kind=kind,
            created_at=now,
            last_seen_at=now,
            expires_at=now + self.absolute,
            ip=ip,
            user_agent=(user_agent or "")[:512] or None,
        )
        await self.db.execute(
            "INSERT INTO sessions (id, user_id, kind, data, created_at, last_seen_at, expires_at,"
            " idle_expires_at, ip, user_agent) VALUES (:id, :user_id, :kind, :data, :now, :now,"
            " :expires_at, :idle_expires_at, :ip, :user_agent)",
            {
                "id": info.id,
                "user_id": user_id,
                "kind": kind,
                "data": data or {},
                "now": now,
                "expires_at": info.expires_at,
                "idle_expires_at": now + self.idle,
                "ip": ip,
                "user_agent": info.user_agent,
            },
        )
        return secret, info

    async def resolve(self, session_id: str) -> tuple[SessionInfo, User, dict[str, Any]] | None:
        """The live session with this id and its user, or None; keeps `last_seen` fresh."""
        key = ("session", session_id)

        async def load() -> _Live | None:
            row = await self.db.fetch_one(
                f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
                " WHERE s.id = :id AND s.revoked_at IS NULL AND NOT u.disabled",
                {"id": session_id},
            )
            if row is None:
                return None
            return _Live(_info(row), user_from_row(row), row["data"] or {}, row["idle_expires_at"])

        live = await self.cache.get_or_load(key, load, lambda found: found.user.id)
        if live is None:
            return None
        now = self.clock.now()
        info = live.info
        if now >= info.expires_at or now >= live.idle_expires_at:
            return None
        if now - info.last_seen_at >= TOUCH_INTERVAL:
            idle = min(now + self.idle, info.expires_at)
            await self.db.execute(
                "UPDATE sessions SET last_seen_at = :now, idle_expires_at = :idle WHERE id = :id",
                {"now": now, "idle": idle, "id": session_id},
            )
            touched = replace(live, info=replace(info, last_seen_at=now), idle_expires_at=idle)
            self.cache.replace(key, live, touched)
            live = touched
        return live.info, live.user, dict(live.data)

    async def save_data(self, session_id: str, user_id: int, data: dict[str, Any]) -> None:
        await self.db.execute(
            "UPDATE sessions SET data = :data WHERE id = :id", {"data": data, "id": session_id}
        )
        await self.cache.changed(user_id)

    async def list_for_user(self, user_id: int) -> list[SessionInfo]:
        rows = await self.db.fetch_all(
            f"SELECT {_SESSION_COLUMNS} FROM sessions s JOIN users u ON u.id = s.user_id"
            " WHERE s.user_id = :user_id AND s.revoked_at IS NULL AND s.expires_at > :now"
            " AND s.idle_expires_at > :now ORDER BY s.last_seen_at DESC",
            {"user_id": user_id, "now": self.clock.now()},
        )
        return [_info(row) for row in rows]

    async def revoke(self, session_id: str, *, user_id: int | None = None) -> bool:
        """End one session; with `user_id`, only if it is theirs (others' ids act as absent)."""
        owner = " AND user_id = :user_id" if user_id is not None else ""
        ended = await self.db.fetch_all(
            f"UPDATE sessions SET revoked_at = :now WHERE id = :id AND revoked_at IS NULL{owner}"
            " RETURNING user_id",
            {"now": self.clock.now(), "id": session_id, "user_id": user_id},
        )
        for row in ended:
            await self.cache.changed(int(row["user_id"]))
        return bool(ended)

    async def revoke_all(self, user_id: int, *, except_id: str | None = None) -> int:
        ended = await self.db.execute(
            "UPDATE sessions SET revoked_at = :now WHERE user_id = :user_id"
            " AND revoked_at IS NULL AND id <> :except_id",
            {"now": self.clock.now(), "user_id": user_id, "except_id": except_id or ""},
        )
        await self.cache.changed(user_id)
        return ended

    # -- API clients: refresh tokens ------------------------------------------------------

    def _refresh_mac(self, session_id: str, nonce: str) -> str:
        if self.refresh_key is None:
            raise RuntimeError("SessionService needs refresh_key to issue refresh tokens")
        return hmac.new(self.refresh_key, f"{session_id}.{nonce}".encode(), "sha256").hexdigest()

    def _new_refresh_token(self, session_id: str) -> str:
        """`<session id>.<nonce>.<mac>`: the MAC tells our tokens from made-up ones."""
        nonce = secrets.token_urlsafe(24)
        return f"{session_id}.{nonce}.{self._refresh_mac(session_id, nonce)}"

    async def issue_refresh_token(self, session_id: str) -> str:
        """The first refresh token of an API session."""
        token = self._new_refresh_token(session_id)
        await self.db.execute(
            "UPDATE sessions SET refresh_token_hash = :hash WHERE id = :id",
            {"hash": digest(token), "id": session_id},
        )
        return token

    async def rotate_refresh_token(self, token: str) -> tuple[SessionInfo, User, str]:
        """Trade a refresh token for a new one, exactly once.

        A token we issued that is no longer the current one (presented twice, or twice at
        once) revokes its session: the client or a thief is replaying it, and we cannot tell
        which. A token we never issued is refused and changes nothing, so nobody can end
        someone's session by guessing its id.
        """
        session_id, _, rest = token.partition(".")
        nonce, _, mac = rest.partition(".")
        if not (session_id and nonce and mac) or not hmac.compare_digest(
            mac, self._refresh_mac(session_id, nonce)
        ):
            raise Unauthorized("this refresh token is not valid; sign in again")
        resolved = await self.resolve(session_id)
        if resolved is None or resolved[0].kind != "api":
            raise Unauthorized("this refresh token is not valid; sign in again")
        fresh = self._new_refresh_token(session_id)
        swapped = await self.db.execute(
            "UPDATE sessions SET refresh_token_hash = :new WHERE id = :id"
            " AND refresh_token_hash = :old AND revoked_at IS NULL",
            {"new": digest(fresh), "old": digest(token), "id": session_id},
        )
        if swapped == 0:
            await self.revoke(session_id)
            raise Unauthorized(
                "this refresh token was already used; the session is ended, sign in again"
            )
        info, user, _ = resolved
        return info, user, fresh


class DatabaseSessionStorage(AbstractStorage):
    """aiohttp-session storage on the `sessions` table: the cookie holds only a random secret.

    A new session (sign-in) always gets a fresh secret, so an id planted before sign-in is
    worthless after it; invalidating a session (sign-out) revokes its row.
    """

    def __init__(self, service: SessionService, *, secure: bool) -> None:
        super().__init__(
            cookie_name=SESSION_COOKIE,
            max_age=int(service.absolute.total_seconds()),
            httponly=True,
            samesite="Lax",
            secure=secure,
            encoder=str,
            decoder=str,
        )
        self.service = service

    async def load_session(self, request: web.Request) -> Session:
        cookie = self.load_cookie(request)
        if cookie:
            resolved = await self.service.resolve(digest(str(cookie)))
            if resolved is not None:
                info, user, data = resolved
                request[SESSION_INFO] = info
                request[SESSION_USER] = user
                created = int(info.created_at.timestamp())
                return Session(
                    cookie,
                    data={"created": created, "session": data},
                    new=False,
                    max_age=self.max_age,
                )
        return Session(None, data=None, new=True, max_age=self.max_age)

    async def save_session(
        self, request: web.Request, response: web.StreamResponse, session: Session
    ) -> None:
        if session.empty:
            if session.identity:
                await self.service.revoke(digest(str(session.identity)))
            self.save_cookie(response, "", max_age=0)
            return
        data = {k: v for k, v in session.items()}
        if session.identity is None:
            user_id = data.get("user_id")
            if not isinstance(user_id, int):
                return  # nothing worth a row: anonymous visitors have no session
            secret, info = await self.service.create(
                user_id,
                kind="browser",
                ip=request.remote,
                user_agent=request.headers.get("User-Agent"),
                data=data,
            )
            session.set_new_identity(secret)
            request[SESSION_INFO] = info
            self.save_cookie(response, secret, max_age=self.max_age)
            return
        loaded = request.get(SESSION_INFO)
        if loaded is not None:
            await self.service.save_data(loaded.id, loaded.user_id, data)


SESSION_INFO = web.RequestKey("session_info", SessionInfo)
SESSION_USER = web.RequestKey("session_user", User)
