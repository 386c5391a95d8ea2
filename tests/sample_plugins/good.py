"""A well-behaved plugin touching most hooks."""

from __future__ import annotations

import asyncio
from pathlib import Path

from aiohttp import web
from marshmallow import Schema, fields

from medianest_server.plugin_api import (
    Event,
    HealthCheck,
    HealthResult,
    NavItem,
    PluginContext,
    Routes,
    SearchGroup,
    SearchResult,
    Task,
    User,
    Widget,
    hookimpl,
)

routes = Routes()
seen_events: list[Event] = []
task_runs: list[int] = []
started: list[str] = []
stopped: list[str] = []


class GoodSettings(Schema):
    greeting = fields.String(load_default="hello", metadata={"doc": "what to say"})
    api_key = fields.String(load_default="", metadata={"secret": True, "doc": "a secret"})
    poll_interval_seconds = fields.Float(load_default=0.05)


@routes.get("/hello", access="public")
async def hello(request: web.Request) -> web.Response:
    return web.json_response({"greeting": "hello"})


@routes.page("/", access="public")
async def page(request: web.Request) -> web.Response:
    return web.Response(text="<h1>good page</h1>", content_type="text/html")


@routes.get("/private", access="user")
async def private(request: web.Request) -> web.Response:
    return web.json_response({"secret": "for users"})


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return GoodSettings


@hookimpl
def medianest_migrations() -> Path:
    return Path(__file__).parent / "good_migrations"


@hookimpl
async def medianest_startup(ctx: PluginContext):  # type: ignore[no-untyped-def]
    started.append(ctx.config["greeting"])
    yield
    stopped.append(ctx.name)


@hookimpl
def medianest_routes() -> Routes:
    return routes


@hookimpl
def medianest_background_tasks(ctx: PluginContext) -> list[Task]:
    async def tick() -> None:
        task_runs.append(len(task_runs))

    return [Task("tick", ctx.config["poll_interval_seconds"], tick)]


@hookimpl
def medianest_health_checks() -> list[HealthCheck]:
    async def fine() -> HealthResult:
        return HealthResult("up", "all good")

    return [HealthCheck("upstream", fine)]


@hookimpl
def medianest_dashboard_widgets(ctx: PluginContext, user: User) -> list[Widget]:
    async def load() -> dict[str, object]:
        return {"greeting": ctx.config["greeting"], "who": user.username, "count": len(seen_events)}

    return [
        Widget(
            "greeting", "Greeting", "good/widget.html", load, refresh_on=["other.thing.happened"]
        ),
        Widget("second", "Second", "good/widget.html", load, order=200),
    ]


@hookimpl
def medianest_nav_items(user: User) -> list[NavItem]:
    return [NavItem("Good", "/good/", icon="home")]


@hookimpl
async def medianest_search(query: str) -> SearchGroup:
    await asyncio.sleep(0)
    return SearchGroup("Good", [SearchResult(f"{query} result", "/good/")])


@hookimpl
def medianest_event_handlers(ctx: PluginContext):  # type: ignore[no-untyped-def]
    async def on_other(event: Event) -> None:
        seen_events.append(event)

    return {"other.thing.happened": on_other}


@hookimpl
def medianest_diagnostics(ctx: PluginContext) -> dict[str, object]:
    return {"greeting": ctx.config["greeting"]}
