"""`GET /health/live` and `GET /health/ready`: public, cheap, and free of details.

Live answers while the process serves requests. Ready answers 200 when the database is reachable
and every known migration is applied, 503 otherwise; each check says only `up` or `down`.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from ..appkeys import DB, MIGRATIONS
from ..db import DatabaseError, pending_migrations

log = logging.getLogger("medianest.health")

READY_TIMEOUT_SECONDS = 2.0

routes = web.RouteTableDef()


@routes.get("/health/live")
async def live(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


@routes.get("/health/ready")
async def ready(request: web.Request) -> web.Response:
    checks = {"database": "down", "migrations": "down"}
    db = request.app[DB]
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await db.ping()
            checks["database"] = "up"
            pending = await pending_migrations(db, request.app[MIGRATIONS])
            if not pending:
                checks["migrations"] = "up"
    except (DatabaseError, TimeoutError) as exc:
        log.warning("readiness check failed: %s", exc)
    is_ready = all(state == "up" for state in checks.values())
    return web.json_response(
        {"status": "ready" if is_ready else "unavailable", "checks": checks},
        status=200 if is_ready else 503,
    )
