"""Sign-in through a login provider (Plex): link the identity to a user, or create one."""

from __future__ import annotations

import logging
import unicodedata
from datetime import datetime
from typing import Any

from ..db import Connection, Database
from ..errors import Conflict, NotFound, Unauthorized
from ..plugins.types import ExternalIdentity, LinkedIdentity
from .models import User
from .names import normalize_username
from .services import AuthServices
from .users import USERNAME

log = logging.getLogger("medianest.auth")


async def user_for_identity(
    auth: AuthServices, identity: ExternalIdentity, *, ip: str | None
) -> User:
    """The user linked to this provider account: refreshed (name, avatar, stored secret) if
    known, created with the provider's role otherwise. A disabled user is refused."""
    secret = auth.secrets.encrypt(identity.secret) if identity.secret else None
    now = auth.users.clock.now()
    row = await auth.users.db.fetch_one(
        "SELECT user_id FROM identities WHERE provider = :provider AND subject = :subject",
        {"provider": identity.provider, "subject": identity.subject},
    )
    if row is not None:
        user_id = int(row["user_id"])
        await _refresh_identity(auth.users.db, identity, secret, now)
        await auth.users.db.execute(
            "UPDATE users SET display_name = coalesce(:name, display_name),"
            " avatar_url = coalesce(:avatar, avatar_url), updated_at = :now WHERE id = :id",
            {
                "name": identity.display_name,
                "avatar": identity.avatar_url,
                "now": now,
                "id": user_id,
            },
        )
        await auth.users.cache.changed(user_id)
        user = await auth.users.get(user_id)
        assert user is not None
    else:
        user = await _create_linked(auth, identity, secret)
        await auth.audit.record(
            "user.created",
            actor=user,
            ip=ip,
            target_type="user",
            target_id=user.id,
            details={"provider": identity.provider, "role": user.role},
        )
    if user.disabled:
        raise Unauthorized("this account is disabled")
    await auth.users.record_login(user.id)
    await auth.audit.record(
        "auth.login.succeeded", actor=user, ip=ip, details={"provider": identity.provider}
    )
    return user


async def _insert_identity(
    conn: Connection, user_id: int, identity: ExternalIdentity, secret: str | None, now: datetime
) -> None:
    await conn.execute(
        "INSERT INTO identities (user_id, provider, subject, username, email, avatar_url,"
        " secret, data, created_at, updated_at) VALUES (:user_id, :provider, :subject,"
        " :username, :email, :avatar, :secret, :data, :now, :now)",
        {"user_id": user_id, **_identity_row(identity, secret, now)},
    )


async def _refresh_identity(
    conn: Connection | Database, identity: ExternalIdentity, secret: str | None, now: datetime
) -> None:
    """What the provider says now about an account already linked (a kept secret stays)."""
    await conn.execute(
        "UPDATE identities SET username = :username, email = :email, avatar_url = :avatar,"
        " secret = coalesce(:secret, secret), data = :data, updated_at = :now"
        " WHERE provider = :provider AND subject = :subject",
        _identity_row(identity, secret, now),
    )


def _identity_row(identity: ExternalIdentity, secret: str | None, now: datetime) -> dict[str, Any]:
    """The identities row's values from what the provider said (`secret` already encrypted)."""
    return {
        "provider": identity.provider,
        "subject": identity.subject,
        "username": identity.username,
        "email": identity.email,
        "avatar": identity.avatar_url,
        "secret": secret,
        "data": dict(identity.data),
        "now": now,
    }


async def _create_linked(
    auth: AuthServices, identity: ExternalIdentity, secret: str | None
) -> User:
    # ASCII only, as every stored username (a Plex "Zoë" becomes "Zoe" via NFKD, "Zo" at worst)
    plain = unicodedata.normalize("NFKD", identity.username)
    base = "".join(c for c in plain if c.isascii() and (c.isalnum() or c in "._@-"))[:56]
    base = base or "user"
    if not USERNAME.match(base):
        base = f"user{base}"[:56]
    async with auth.users.db.transaction() as conn:
        for attempt in range(100):
            candidate = base if attempt == 0 else f"{base}-{attempt + 1}"
            taken = await conn.fetch_val(
                "SELECT count(*) FROM users WHERE lower(username) = :key",
                {"key": normalize_username(candidate)},
            )
            if not taken:
                break
        user = await auth.users.create(
            candidate,
            role=identity.role,
            display_name=identity.display_name,
            email=identity.email,
            avatar_url=identity.avatar_url,
            conn=conn,
        )
        now = auth.users.clock.now()
        await _insert_identity(conn, user.id, identity, secret, now)
    return user


async def identity_secret(auth: AuthServices, user_id: int, provider: str) -> str | None:
    """The upstream secret (a per-user token) stored for this user's provider account."""
    stored = await auth.users.db.fetch_val(
        "SELECT secret FROM identities WHERE user_id = :user_id AND provider = :provider",
        {"user_id": user_id, "provider": provider},
    )
    return auth.secrets.decrypt(stored) if stored else None


async def linked_identity(auth: AuthServices, user_id: int, provider: str) -> LinkedIdentity | None:
    """The user's account at `provider` (never its secret), or None."""
    row = await auth.users.db.fetch_one(
        "SELECT id, provider, subject, username, email FROM identities"
        " WHERE user_id = :user_id AND provider = :provider",
        {"user_id": user_id, "provider": provider},
    )
    return _linked(row) if row is not None else None


async def linked_identities(auth: AuthServices, user_id: int) -> list[LinkedIdentity]:
    rows = await auth.users.db.fetch_all(
        "SELECT id, provider, subject, username, email FROM identities"
        " WHERE user_id = :user_id ORDER BY provider",
        {"user_id": user_id},
    )
    return [_linked(row) for row in rows]


def _linked(row: Any) -> LinkedIdentity:
    return LinkedIdentity(
        id=int(row["id"]),
        provider=str(row["provider"]),
        subject=str(row["subject"]),
        username=row["username"],
        email=row["email"],
    )


async def link_identity(
    auth: AuthServices, user: User, identity: ExternalIdentity, *, ip: str | None
) -> None:
    """Link a provider account to a signed-in user (a login provider's flow run from the
    profile). An account linked to someone else is refused (409); a user has one account
    per provider (link another after unlinking)."""
    secret = auth.secrets.encrypt(identity.secret) if identity.secret else None
    now = auth.users.clock.now()
    async with auth.users.db.transaction() as conn:
        owner = await conn.fetch_val(
            "SELECT user_id FROM identities WHERE provider = :provider AND subject = :subject",
            {"provider": identity.provider, "subject": identity.subject},
        )
        if owner is not None and int(owner) != user.id:
            raise Conflict(
                f"This {identity.provider} account is linked to another MediaNest user.",
                details={"provider": [identity.provider]},
            )
        if owner is not None:  # already this user's: refresh what the provider said
            await _refresh_identity(conn, identity, secret, now)
            return
        other = await conn.fetch_val(
            "SELECT username FROM identities WHERE user_id = :user_id AND provider = :provider",
            {"user_id": user.id, "provider": identity.provider},
        )
        if other is not None:
            raise Conflict(
                f"Your profile is linked to another {identity.provider} account ({other}); "
                "unlink it first.",
                details={"provider": [identity.provider]},
            )
        await _insert_identity(conn, user.id, identity, secret, now)
    await auth.users.cache.changed(user.id)
    await auth.audit.record(
        "identity.linked",
        actor=user,
        ip=ip,
        target_type="user",
        target_id=user.id,
        details={"provider": identity.provider, "username": identity.username},
    )


async def unlink_identity(
    auth: AuthServices, user: User, identity_id: int, *, ip: str | None
) -> LinkedIdentity:
    """Unlink one of the user's provider accounts while another way to sign in remains (a
    password, or another linked account); 409 otherwise, 404 for someone else's."""
    async with auth.users.db.transaction() as conn:
        row = await conn.fetch_one(
            "SELECT id, provider, subject, username, email FROM identities"
            " WHERE id = :id AND user_id = :user_id",
            {"id": identity_id, "user_id": user.id},
        )
        if row is None:
            raise NotFound("no such linked account")
        has_password = await conn.fetch_val(
            "SELECT password_hash IS NOT NULL FROM users WHERE id = :id", {"id": user.id}
        )
        others = await conn.fetch_val(
            "SELECT count(*) FROM identities WHERE user_id = :user_id AND id <> :id",
            {"user_id": user.id, "id": identity_id},
        )
        if not has_password and not others:
            raise Conflict(
                "This is your only way to sign in: set a password or link another account "
                "before you unlink it."
            )
        await conn.execute("DELETE FROM identities WHERE id = :id", {"id": identity_id})
    await auth.users.cache.changed(user.id)
    unlinked = _linked(row)
    await auth.audit.record(
        "identity.unlinked",
        actor=user,
        ip=ip,
        target_type="user",
        target_id=user.id,
        details={"provider": unlinked.provider, "username": unlinked.username},
    )
    return unlinked
