"""What the running server last knew about its plugins, kept in the database so that
`medianest plugins` (another process) can show a failure that only start-up revealed."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from ..clock import Clock
from ..db import Database
from .loader import PluginManager

SETTING = "plugins.status"


@dataclass(frozen=True)
class RecordedStatus:
    status: str
    stage: str | None
    error: str | None
    at: datetime


async def record_statuses(db: Database, manager: PluginManager, clock: Clock) -> None:
    """Store every plugin's status now (one row; the last instance to write wins)."""
    value = {
        record.name: {"status": record.status, "stage": record.stage, "error": record.error}
        for record in manager.records.values()
        if not record.builtin
    }
    await db.execute(
        "INSERT INTO settings (key, value, updated_at) VALUES (:key, :value, :now)"
        " ON CONFLICT (key) DO UPDATE SET value = excluded.value,"
        " updated_at = excluded.updated_at",
        {"key": SETTING, "value": json.dumps(value), "now": clock.now()},
    )


async def recorded_statuses(db: Database) -> dict[str, RecordedStatus]:
    """The statuses the server stored last, by plugin name (empty if it never ran)."""
    row = await db.fetch_one(
        "SELECT value, updated_at FROM settings WHERE key = :key", {"key": SETTING}
    )
    if row is None:
        return {}
    value: Any = row["value"]
    if isinstance(value, str):
        value = json.loads(value)
    at = row["updated_at"]
    if isinstance(at, str):
        at = datetime.fromisoformat(at)
    return {
        name: RecordedStatus(entry.get("status", ""), entry.get("stage"), entry.get("error"), at)
        for name, entry in (value or {}).items()
        if isinstance(entry, dict)
    }
