"""Per-user notifications: stored, then pushed live as `core.notification.created`.

One `Notifications` per app (`Services.notifications`). The unread count, shown on every page,
is kept in the user cache and forgotten whenever the user's notifications change.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .db import Database, Row
from .events import EventBus, make_event
from .usercache import UNCACHED, UserCache


class Notifications:
    def __init__(
        self,
        db: Database,
        events: EventBus,
        *,
        cache: UserCache = UNCACHED,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.db = db
        self.events = events
        self.clock = clock
        self.cache = cache

    async def create(
        self,
        *,
        user_id: int,
        type: str,
        title: str,
        body: str = "",
        link: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> int:
        """Store a notification and publish it to the user's topic; returns its id.

        The event itself tells other instances that this user's unread count changed."""
        now = self.clock.now()
        notification_id = await self.db.fetch_val(
            "INSERT INTO notifications (user_id, type, title, body, link, data, created_at)"
            " VALUES (:user_id, :type, :title, :body, :link, :data, :now) RETURNING id",
            {
                "user_id": user_id,
                "type": type,
                "title": title,
                "body": body,
                "link": link,
                "data": dict(data or {}),
                "now": now,
            },
        )
        self.cache.forget_user(user_id)
        await self.events.publish(
            make_event(
                "core.notification.created",
                {"id": notification_id, "title": title, "body": body, "link": link, "type": type},
                topic=f"user:{user_id}",
                clock=self.clock,
            )
        )
        return int(notification_id)

    async def create_for_admins(
        self,
        *,
        type: str,
        title: str,
        body: str = "",
        link: str | None = None,
        data: Mapping[str, Any] | None = None,
    ) -> list[int]:
        """The same notification for every admin who is not disabled: stored for each (so
        an admin who was not connected finds it in the bell later), pushed live to each."""
        rows = await self.db.fetch_all(
            "SELECT id FROM users WHERE role = 'admin' AND NOT disabled ORDER BY id"
        )
        return [
            await self.create(
                user_id=int(row["id"]), type=type, title=title, body=body, link=link, data=data
            )
            for row in rows
        ]

    async def list(
        self, user_id: int, *, unread_only: bool = False, page: int = 1, per_page: int = 25
    ) -> tuple[list[dict[str, Any]], int, int]:
        """A page of the user's notifications (newest first), the total, and how many are
        unread."""
        unread_clause = " AND read_at IS NULL" if unread_only else ""
        params = {"user_id": user_id, "limit": per_page, "offset": (page - 1) * per_page}
        rows = await self.db.fetch_all(
            "SELECT id, type, title, body, link, data, created_at, read_at FROM notifications"
            f" WHERE user_id = :user_id{unread_clause} ORDER BY created_at DESC, id DESC"
            " LIMIT :limit OFFSET :offset",
            params,
        )
        total = await self.db.fetch_val(
            f"SELECT count(*) FROM notifications WHERE user_id = :user_id{unread_clause}", params
        )
        return [_notification_dict(r) for r in rows], int(total or 0), await self.unread(user_id)

    async def mark_read(self, user_id: int, notification_id: int | None) -> int:
        """Mark one (or, with None, every) unread notification of the user read; returns how
        many."""
        params = {"now": self.clock.now(), "user_id": user_id, "id": notification_id}
        if notification_id is None:
            changed = await self.db.execute(
                "UPDATE notifications SET read_at = :now WHERE user_id = :user_id"
                " AND read_at IS NULL",
                params,
            )
        else:
            # marking an already read notification again is fine; someone else's is "not found"
            changed = await self.db.execute(
                "UPDATE notifications SET read_at = coalesce(read_at, :now)"
                " WHERE user_id = :user_id AND id = :id",
                params,
            )
        if changed:
            await self.cache.changed(user_id)
        return changed

    async def unread(self, user_id: int) -> int:
        async def load() -> int:
            value = await self.db.fetch_val(
                "SELECT count(*) FROM notifications WHERE user_id = :user_id AND read_at IS NULL",
                {"user_id": user_id},
            )
            return int(value or 0)

        count = await self.cache.get_or_load(("unread", user_id), load, lambda _: user_id)
        return count or 0


def _notification_dict(row: Row) -> dict[str, Any]:
    return {
        "id": int(row["id"]),
        "type": row["type"],
        "title": row["title"],
        "body": row["body"],
        "link": row["link"],
        "data": row["data"] or {},
        "created_at": row["created_at"].isoformat(),
        "read": row["read_at"] is not None,
    }
