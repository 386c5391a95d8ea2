"""Users: the store (SQL) and the rules (roles, the last admin, passwords)."""

from __future__ import annotations

import copy
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import SYSTEM_CLOCK, Clock
from ..db import Connection, Database, IntegrityError, Row
from ..errors import Conflict, Forbidden, InvalidInput, NotFound, Unauthorized
from ..usercache import UNCACHED, UserCache
from .models import ROLES, Role, User
from .names import normalize_username, typed_username
from .passwords import MAX_LENGTH, MIN_LENGTH, hash_password, verify_password

USERNAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._@-]{0,63}$")
_COLUMNS = "id, username, role, display_name, avatar_url, disabled"


@dataclass(frozen=True)
class UserDetails:
    """A user with what admins see about them (never the password hash)."""

    user: User
    email: str | None
    created_at: datetime
    last_login_at: datetime | None
    has_password: bool

    def as_dict(self) -> dict[str, Any]:
        return {
            **user_dict(self.user),
            "email": self.email,
            "created_at": self.created_at.isoformat(),
            "last_login_at": self.last_login_at.isoformat() if self.last_login_at else None,
            "has_password": self.has_password,
        }


def user_dict(user: User) -> dict[str, Any]:
    return {
        "id": user.id,
        "username": user.username,
        "display_name": user.display_name,
        "role": user.role,
        "avatar_url": user.avatar_url,
        "disabled": user.disabled,
    }


def user_from_row(row: Row) -> User:
    return User(
        id=int(row["id"]),
        username=row["username"],
        role=row["role"],
        display_name=row["display_name"],
        avatar_url=row["avatar_url"],
        disabled=bool(row["disabled"]),
    )


def like_escape(text: str) -> str:
    """`text` matched literally inside a LIKE pattern (with ESCAPE '\\')."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def check_password_rules(password: str, field: str = "password") -> None:
    if len(password) < MIN_LENGTH:
        raise InvalidInput(
            f"{field} must be at least {MIN_LENGTH} characters",
            details={field: [f"Shorter than minimum length {MIN_LENGTH}."]},
        )
    if len(password) > MAX_LENGTH:
        raise InvalidInput(
            f"{field} is too long", details={field: [f"Longer than maximum length {MAX_LENGTH}."]}
        )


class UserService:
    """Everything that creates, changes or removes a user goes through here."""

    def __init__(
        self,
        db: Database,
        *,
        clock: Clock = SYSTEM_CLOCK,
        on_remove: Callable[[User], Awaitable[None]] | None = None,
        cache: UserCache = UNCACHED,
    ) -> None:
        self.db = db
        self.clock = clock
        self.on_remove = on_remove
        # signed-in requests see a changed role, name or disabled flag at once
        self.cache = cache

    async def count(self) -> int:
        return int(await self.db.fetch_val("SELECT count(*) FROM users") or 0)

    async def get(self, user_id: int) -> User | None:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS} FROM users WHERE id = :id", {"id": user_id}
        )
        return user_from_row(row) if row else None

    async def details(self, user_id: int) -> UserDetails:
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS}, email, created_at, last_login_at, password_hash IS NOT NULL"
            " AS has_password FROM users WHERE id = :id",
            {"id": user_id},
        )
        if row is None:
            raise NotFound(f"no user with id {user_id}")
        return _details(row)

    async def create(
        self,
        username: str,
        *,
        password: str | None = None,
        role: Role = "user",
        display_name: str | None = None,
        email: str | None = None,
        avatar_url: str | None = None,
        conn: Connection | None = None,
    ) -> User:
        username = typed_username(username)
        if not USERNAME.match(username):
            raise InvalidInput(
                "username must be 1-64 letters, digits or . _ @ -, starting with a letter or digit",
                details={"username": ["Invalid username."]},
            )
        if role not in ROLES:
            raise InvalidInput(
                f"role must be one of {', '.join(ROLES)}", details={"role": ["Invalid role."]}
            )
        password_hash = None
        if password is not None:
            check_password_rules(password)
            password_hash = await hash_password(password)
        now = self.clock.now()
        try:
            user_id = await (conn or self.db).fetch_val(
                "INSERT INTO users (username, display_name, email, avatar_url, password_hash, role,"
                " disabled, preferences, created_at, updated_at) VALUES (:username, :display_name,"
                " :email, :avatar_url, :password_hash, :role, false, :preferences, :now, :now)"
                " RETURNING id",
                {
                    "username": username,
                    "display_name": display_name,
                    "email": email,
                    "avatar_url": avatar_url,
                    "password_hash": password_hash,
                    "role": role,
                    "preferences": {},
                    "now": now,
                },
            )
        except IntegrityError as exc:
            raise Conflict(
                f"the username {username!r} is taken", details={"username": ["Already taken."]}
            ) from exc
        return User(int(user_id), username, role, display_name, avatar_url)

    async def authenticate(self, username: str, password: str) -> User:
        """The user whose username and password these are; Unauthorized otherwise.

        Takes as long for an unknown username as for a wrong password.
        """
        row = await self.db.fetch_one(
            f"SELECT {_COLUMNS}, password_hash FROM users WHERE lower(username) = :key",
            {"key": normalize_username(username)},
        )
        ok = await verify_password(row["password_hash"] if row else None, password)
        if row is None or not ok:
            raise Unauthorized("wrong username or password")
        user = user_from_row(row)
        if user.disabled:
            raise Unauthorized("this account is disabled")
        return user

    async def record_login(self, user_id: int) -> None:
        await self.db.execute(
            "UPDATE users SET last_login_at = :now WHERE id = :id",
            {"now": self.clock.now(), "id": user_id},
        )

    async def change_password(self, user: User, current: str, new: str) -> None:
        row = await self.db.fetch_one(
            "SELECT password_hash FROM users WHERE id = :id", {"id": user.id}
        )
        if row is None or not await verify_password(row["password_hash"], current):
            raise InvalidInput(
                "the current password is wrong",
                details={"current_password": ["Wrong password."]},
            )
        await self.set_password(user.id, new)

    async def set_password(self, user_id: int, new: str) -> None:
        check_password_rules(new, "new_password")
        await self.db.execute(
            "UPDATE users SET password_hash = :hash, updated_at = :now WHERE id = :id",
            {"hash": await hash_password(new), "now": self.clock.now(), "id": user_id},
        )

    async def search(
        self, *, query: str = "", page: int = 1, per_page: int = 25
    ) -> tuple[list[UserDetails], int]:
        pattern = f"%{like_escape(query.lower())}%"
        where = (
            "WHERE lower(username) LIKE :pattern ESCAPE '\\'"
            " OR lower(coalesce(display_name, '')) LIKE :pattern ESCAPE '\\'"
            " OR lower(coalesce(email, '')) LIKE :pattern ESCAPE '\\'"
        )
        params = {"pattern": pattern, "limit": per_page, "offset": (page - 1) * per_page}
        total = await self.db.fetch_val(f"SELECT count(*) FROM users {where}", params)
        rows = await self.db.fetch_all(
            f"SELECT {_COLUMNS}, email, created_at, last_login_at, password_hash IS NOT NULL"
            f" AS has_password FROM users {where} ORDER BY lower(username) LIMIT :limit"
            " OFFSET :offset",
            params,
        )
        return [_details(row) for row in rows], int(total or 0)

    async def update(
        self, actor: User, user_id: int, *, role: Role | None = None, disabled: bool | None = None
    ) -> User:
        """Change a user's role or disabled flag. An admin cannot demote or disable themselves,
        and the last active admin stays an active admin."""
        if user_id == actor.id and (role == "user" or disabled):
            raise Forbidden("you cannot demote or disable yourself; ask another admin")
        async with self.db.transaction() as conn:
            target, other_admins = await self._lock_admins_and(conn, user_id)
            losing_admin = (
                target.is_admin and not target.disabled and (role == "user" or disabled is True)
            )
            if losing_admin and other_admins == 0:
                raise Forbidden("this is the last admin; make someone else admin first")
            await conn.execute(
                "UPDATE users SET role = :role, disabled = :disabled, updated_at = :now"
                " WHERE id = :id",
                {
                    "role": role or target.role,
                    "disabled": target.disabled if disabled is None else disabled,
                    "now": self.clock.now(),
                    "id": user_id,
                },
            )
        await self.cache.changed(user_id)
        updated = await self.get(user_id)
        assert updated is not None
        return updated

    async def delete(self, actor: User, user_id: int) -> User:
        """Delete a user and everything that is theirs (rows cascade; plugins remove files)."""
        if user_id == actor.id:
            raise Forbidden("you cannot delete yourself; ask another admin")
        async with self.db.transaction() as conn:
            target, other_admins = await self._lock_admins_and(conn, user_id)
            if target.is_admin and not target.disabled and other_admins == 0:
                raise Forbidden("this is the last admin; make someone else admin first")
            # disabled first, in the same transaction as the check: they can no longer sign
            # in, and a concurrent deletion of the last other admin now sees them gone
            await conn.execute(
                "UPDATE users SET disabled = true, updated_at = :now WHERE id = :id",
                {"now": self.clock.now(), "id": user_id},
            )
        await self.cache.changed(user_id)
        if self.on_remove is not None:
            await self.on_remove(target)
        await self.db.execute("DELETE FROM users WHERE id = :id", {"id": user_id})
        return target

    async def _lock_admins_and(self, conn: Connection, user_id: int) -> tuple[User, int]:
        """Lock the target and every active admin, in id order, in one statement.

        On PostgreSQL two admins demoting each other at once then queue behind each other
        (one ordered lock set, so no deadlock) and the second sees the first's change; SQLite
        has one writer at a time anyway. Returns the target and how many other active admins
        there are.
        """
        lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
        rows = await conn.fetch_all(
            f"SELECT {_COLUMNS} FROM users WHERE id = :id"
            f" OR (role = 'admin' AND disabled = false) ORDER BY id{lock}",
            {"id": user_id},
        )
        users = [user_from_row(row) for row in rows]
        target = next((u for u in users if u.id == user_id), None)
        if target is None:
            raise NotFound(f"no user with id {user_id}")
        others = sum(1 for u in users if u.id != user_id and u.is_admin and not u.disabled)
        return target, others


def _details(row: Row) -> UserDetails:
    return UserDetails(
        user=user_from_row(row),
        email=row["email"],
        created_at=row["created_at"],
        last_login_at=row["last_login_at"],
        has_password=bool(row["has_password"]),
    )


class PreferenceStore:
    """Per-user preferences (theme, dashboard order) kept in users.preferences."""

    def __init__(
        self, db: Database, *, clock: Clock = SYSTEM_CLOCK, cache: UserCache = UNCACHED
    ) -> None:
        self.db = db
        self.clock = clock
        self.cache = cache

    async def get(self, user_id: int) -> dict[str, Any]:
        async def load() -> dict[str, Any]:
            value = await self.db.fetch_val(
                "SELECT preferences FROM users WHERE id = :id", {"id": user_id}
            )
            return dict(value or {})

        cached = await self.cache.get_or_load(("preferences", user_id), load, lambda _: user_id)
        return copy.deepcopy(cached or {})  # callers may change what they get

    async def update(self, user_id: int, **changes: Any) -> dict[str, Any]:
        async with self.db.transaction() as conn:
            lock = " FOR UPDATE" if self.db.dialect == "postgresql" else ""
            current = await conn.fetch_val(
                f"SELECT preferences FROM users WHERE id = :id{lock}", {"id": user_id}
            )
            merged = {**(current or {}), **changes}
            await conn.execute(
                "UPDATE users SET preferences = :prefs, updated_at = :now WHERE id = :id",
                {"prefs": merged, "now": self.clock.now(), "id": user_id},
            )
        await self.cache.changed(user_id)
        return merged
