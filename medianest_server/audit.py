"""The audit log: who did what security-relevant thing, from where, and when."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .auth.models import User
from .auth.users import like_escape
from .clock import SYSTEM_CLOCK, Clock
from .db import Database

# every action the core records; plugins add `<plugin>.<noun>.<verb>` style actions of their own
ACTIONS = (
    "auth.login.succeeded",
    "auth.login.failed",
    "auth.logout",
    "auth.password.changed",
    "auth.session.revoked",
    "auth.token.created",
    "auth.token.revoked",
    "auth.setup.completed",
    "user.created",
    "user.role.changed",
    "user.disabled",
    "user.enabled",
    "user.deleted",
    "user.sessions.revoked",
    "settings.changed",
)


@dataclass(frozen=True)
class AuditEntry:
    id: int
    at: datetime
    actor_user_id: int | None
    actor_name: str | None
    action: str
    target_type: str | None
    target_id: str | None
    ip: str | None
    details: Mapping[str, Any]

    def as_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.isoformat(),
            "actor_user_id": self.actor_user_id,
            "actor_name": self.actor_name,
            "action": self.action,
            "target_type": self.target_type,
            "target_id": self.target_id,
            "ip": self.ip,
            "details": dict(self.details),
        }


class AuditLog:
    def __init__(self, db: Database, *, clock: Clock = SYSTEM_CLOCK) -> None:
        self.db = db
        self.clock = clock

    async def record(
        self,
        action: str,
        *,
        actor: User | None = None,
        actor_name: str | None = None,
        ip: str | None = None,
        target_type: str | None = None,
        target_id: object = None,
        details: Mapping[str, Any] | None = None,
    ) -> None:
        await self.db.execute(
            "INSERT INTO audit_log (at, actor_user_id, actor_name, action, target_type, target_id,"
            " ip, details) VALUES (:at, :actor_id, :actor_name, :action, :target_type,"
            " :target_id, :ip, :details)",
            {
                "at": self.clock.now(),
                "actor_id": actor.id if actor else None,
                "actor_name": actor.username if actor else actor_name,
                "action": action,
                "target_type": target_type,
                "target_id": None if target_id is None else str(target_id),
                "ip": ip,
                "details": dict(details or {}),
            },
        )

    async def search(
        self,
        *,
        action: str | None = None,
        actor: str | None = None,
        page: int = 1,
        per_page: int = 50,
    ) -> tuple[list[AuditEntry], int]:
        """Newest first; `action` matches a prefix (`auth.login`), `actor` a name."""
        where = ["1 = 1"]
        params: dict[str, Any] = {"limit": per_page, "offset": (page - 1) * per_page}
        if action:
            where.append("action LIKE :action ESCAPE '\\'")
            params["action"] = like_escape(action) + "%"
        if actor:
            where.append("lower(actor_name) = lower(:actor)")
            params["actor"] = actor
        clause = " AND ".join(where)
        total = await self.db.fetch_val(f"SELECT count(*) FROM audit_log WHERE {clause}", params)
        rows = await self.db.fetch_all(
            f"SELECT * FROM audit_log WHERE {clause} ORDER BY at DESC, id DESC"
            " LIMIT :limit OFFSET :offset",
            params,
        )
        entries = [
            AuditEntry(
                int(r["id"]),
                r["at"],
                r["actor_user_id"],
                r["actor_name"],
                r["action"],
                r["target_type"],
                r["target_id"],
                r["ip"],
                r["details"] or {},
            )
            for r in rows
        ]
        return entries, int(total or 0)
