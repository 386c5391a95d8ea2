"""Built-in plugin: `GET /health/live`, `GET /health/ready`, and the core's own health checks.

Both endpoints are public, cheap and free of details. Live answers while the process serves.
Ready answers 200 when the database is reachable and every known migration is applied (503
otherwise), and lists plugins that failed without failing the whole server.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator

from aiohttp import web

from ..appkeys import HEALTH, MIGRATIONS, PLUGINS, SERVICES
from ..db import DatabaseError, pending_migrations
from ..hookspecs import hookimpl
from ..plugins.context import PluginContext
from ..plugins.types import HealthCheck, HealthResult
from ..routing import Routes
from .api_schemas import HealthLive, HealthReady

log = logging.getLogger("medianest.health")

READY_TIMEOUT_SECONDS = 2.0

routes = Routes()


@routes.get("/health/live", access="public", response=HealthLive)
async def live(request: web.Request) -> web.Response:
    """200 while the process serves requests."""
    return web.json_response({"status": "ok"})


@routes.get("/health/ready", access="public", response=HealthReady)
async def ready(request: web.Request) -> web.Response:
    """200 when the database is reachable and migrated (503 otherwise); failed plugins listed."""
    checks = {"database": "down", "migrations": "down"}
    db = request.app[SERVICES].db
    try:
        async with asyncio.timeout(READY_TIMEOUT_SECONDS):
            await db.ping()
            checks["database"] = "up"
            if not await pending_migrations(db, request.app[MIGRATIONS]):
                checks["migrations"] = "up"
    except (DatabaseError, TimeoutError) as exc:
        log.warning("readiness check failed: %s", exc)
    is_ready = all(state == "up" for state in checks.values())
    return web.json_response(
        {
            "status": "ready" if is_ready else "unavailable",
            "checks": checks,
            "failed_plugins": request.app[PLUGINS].failed_names(),
        },
        status=200 if is_ready else 503,
    )


async def running_checks(app: web.Application) -> AsyncIterator[None]:
    """cleanup_ctx: at shutdown, checks still running are cancelled and waited for briefly;
    one that swallows its cancellation is left behind, never waited for."""
    yield
    await app[HEALTH].close()


@hookimpl
def medianest_routes() -> Routes:
    return routes


@hookimpl
def medianest_health_checks(ctx: PluginContext) -> list[HealthCheck]:
    async def database() -> HealthResult:
        started = time.perf_counter()
        await ctx.db.ping()
        return HealthResult("up", ctx.db.url_for_display, _ms(started))

    async def cache() -> HealthResult:
        # a round trip through the shared cache: Redis when configured, memory otherwise
        started = time.perf_counter()
        await ctx.cache.set("health-probe", started, ttl_seconds=10)
        if await ctx.cache.get("health-probe") != started:
            return HealthResult("degraded", "the cache did not return what was stored")
        return HealthResult("up", "", _ms(started))

    return [HealthCheck("database", database), HealthCheck("cache", cache)]


def _ms(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
