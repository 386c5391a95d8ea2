"""MediaNest's Plex plugin: sign in with Plex, the library, collections, refreshes, webhooks.

The hooks only wire the modules: settings in config.py, the clients in client.py, the rules in
service.py, the pages and JSON API in routes.py.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from marshmallow import Schema
from medianest_server.plugin_api import (
    Event,
    EventHandler,
    HealthCheck,
    HealthResult,
    LoginProvider,
    NavItem,
    PluginContext,
    Routes,
    SearchGroup,
    SearchResult,
    SetupAction,
    User,
    Webhook,
    Widget,
    hookimpl,
)

from .config import PlexSettings
from .errors import PlexError
from .routes import build_routes, webhook_handler
from .service import PlexService, PlexSignInNeeded
from .setup import test_settings

PLUGIN_TITLE = "Plex"
SERVICE_NAME = "plex"


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return PlexSettings


@hookimpl
def medianest_migrations() -> Path:
    return Path(__file__).parent / "migrations"


@hookimpl
async def medianest_startup(ctx: PluginContext) -> AsyncIterator[None]:
    # the core starts the plugin only once url and token (its setup settings) are set
    ctx.services.publish(SERVICE_NAME, PlexService.start(ctx))
    yield
    ctx.services.remove(SERVICE_NAME)


@hookimpl
def medianest_health_checks(ctx: PluginContext) -> list[HealthCheck]:
    async def server() -> HealthResult:
        service = ctx.services.get(SERVICE_NAME, PlexService)
        if service is None:
            return HealthResult("down", "The Plex plugin is not started")
        started = ctx.clock.monotonic()
        try:
            identity = await service.server.identity()
            latency_ms = round((ctx.clock.monotonic() - started) * 1000, 1)
            info = await service.server.server_info()  # the owner token works too
        except PlexError as exc:
            return HealthResult("down", exc.detail)  # admins: the path, status or cause
        return HealthResult(
            "up",
            f"Plex {identity.version} ({identity.machine_identifier})",
            latency_ms,
            details={"name": info.friendly_name, "machine_identifier": info.machine_identifier},
        )

    return [HealthCheck("server", server, timeout_seconds=10)]


@hookimpl
def medianest_routes(ctx: PluginContext) -> Routes:
    return build_routes(ctx)


@hookimpl
async def medianest_test_connection(ctx: PluginContext, settings: dict[str, Any]) -> HealthResult:
    return await test_settings(ctx, settings)


@hookimpl
def medianest_setup_actions() -> list[SetupAction]:
    return [
        SetupAction(
            "Sign in with Plex",
            "/plex/setup",
            "Sign in with the Plex account that owns your server and pick it from the list: "
            "MediaNest fills in its address and token for you.",
            icon="plex",
        )
    ]


@hookimpl
def medianest_login_providers() -> list[LoginProvider]:
    return [LoginProvider("plex", "Sign in with Plex", "/plex/login", icon="plex", popup=True)]


@hookimpl
async def medianest_search(ctx: PluginContext, user: User, query: str) -> SearchGroup | None:
    service = ctx.services.get(SERVICE_NAME, PlexService)
    if service is None or len(query.strip()) < 2:
        return None
    try:
        items = await service.search(user, query, limit=10)
    except PlexSignInNeeded:
        return None
    results = [
        SearchResult(
            item["display_title"],
            item["url"],
            subtitle=str(item["subtitle"] or item["year"] or ""),
            image_url=item["thumb_url"],
            kind=item["type"],
        )
        for item in items
    ]
    return SearchGroup("Plex", results, more_url=f"/plex/search?{urlencode({'q': query})}")


@hookimpl
def medianest_dashboard_widgets(ctx: PluginContext, user: User) -> list[Widget]:
    service = ctx.services.get(SERVICE_NAME, PlexService)
    if service is None:
        return []
    plex = service

    async def status() -> Mapping[str, Any]:
        return await plex.server_status(with_sessions=user.is_admin)

    async def recent() -> Mapping[str, Any]:
        try:
            return {"items": await plex.recently_added(user, size=12), "error": None}
        except PlexError as exc:
            return {"items": [], "error": exc.message}

    async def libraries() -> Mapping[str, Any]:
        try:
            return {"libraries": await plex.sections(user), "error": None}
        except PlexError as exc:
            return {"libraries": [], "error": exc.message}

    return [
        Widget("status", "Plex server", "plex/widgets/status.html", status, size="small"),
        Widget(
            "recent",
            "Recently added",
            "plex/widgets/recent.html",
            recent,
            size="large",
            refresh_on=["plex.library.updated"],
        ),
        Widget(
            "libraries",
            "Libraries",
            "plex/widgets/libraries.html",
            libraries,
            size="small",
            refresh_on=["plex.library.updated"],
        ),
    ]


@hookimpl
def medianest_webhooks(ctx: PluginContext) -> list[Webhook]:
    return [Webhook("events", webhook_handler(ctx))]


@hookimpl
def medianest_event_handlers(ctx: PluginContext) -> dict[str, EventHandler]:
    async def download_completed(event: Event) -> None:
        service = ctx.services.get(SERVICE_NAME, PlexService)
        if service is None:
            return
        # every instance receives the event (Redis); one of them refreshes and files it
        if not await ctx.cache.add(f"download-handled:{event.id}", 1, 24 * 3600):
            return
        try:
            done = await service.download_completed(event.data)
        except (PlexError, ValueError) as exc:
            ctx.log.warning("plex could not handle download %s: %s", event.id, exc)
            return
        ctx.log.info("plex handled download %s: %s", event.id, done)

    return {"youtube.download.completed": download_completed}


@hookimpl
def medianest_nav_items() -> list[NavItem]:
    return [NavItem("Library", "/plex/", icon="film", order=20)]
