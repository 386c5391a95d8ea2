"""Per-user notifications: stored, then pushed live as `core.notification.created`."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .clock import SYSTEM_CLOCK, Clock
from .db import Database
from .events import EventBus, make_event


async def create_notification(
    db: Database,
    events: EventBus,
    *,
    user_id: int,
    type: str,
    title: str,
    body: str = "",
    link: str | None = None,
    data: Mapping[str, Any] | None = None,
    clock: Clock = SYSTEM_CLOCK,
) -> int:
    """Store a notification and publish it to the user's topic; returns its id."""
    now = clock.now()
    notification_id = await db.fetch_val(
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
    await events.publish(
        make_event(
            "core.notification.created",
            {"id": notification_id, "title": title, "body": body, "link": link, "type": type},
            topic=f"user:{user_id}",
            clock=clock,
        )
    )
    return int(notification_id)
