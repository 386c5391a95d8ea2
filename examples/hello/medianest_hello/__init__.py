"""The hello plugin: each hook is a few lines, wiring the pieces below."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from medianest_server.plugin_api import (
    HealthCheck,
    HealthResult,
    NavItem,
    PluginContext,
    Routes,
    Task,
    User,
    Widget,
    hookimpl,
)

TEMPLATES = Path(__file__).parent / "templates"


class HelloSettings(Schema):
    greeting = fields.String(
        load_default="Hello",
        validate=validate.Length(min=1, max=100),
        metadata={"doc": "what to say"},
    )
    tick_interval_seconds = fields.Float(
        load_default=60.0, validate=validate.Range(min=0.01), metadata={"doc": "how often to tick"}
    )


class Ticker:
    """The plugin's state: how many times the periodic task ran."""

    def __init__(self) -> None:
        self.ticks = 0


def _ticker(ctx: PluginContext) -> Ticker:
    """The Ticker published at startup (other plugins could look it up the same way)."""
    ticker = ctx.services.get("hello", Ticker)
    assert ticker is not None, "medianest_startup publishes it before anything runs"
    return ticker


def build_routes(ctx: PluginContext) -> Routes:
    routes = Routes()

    @routes.get("/greeting", access="user")
    async def greeting(request: web.Request) -> web.Response:
        ticks = _ticker(ctx).ticks
        return web.json_response({"greeting": ctx.config["greeting"], "ticks": ticks})

    return routes


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return HelloSettings


@hookimpl
def medianest_startup(ctx: PluginContext) -> None:
    ctx.services.publish("hello", Ticker())


@hookimpl
def medianest_routes(ctx: PluginContext) -> Routes:
    return build_routes(ctx)


@hookimpl
def medianest_background_tasks(ctx: PluginContext) -> list[Task]:
    ticker = _ticker(ctx)

    async def tick() -> None:
        ticker.ticks += 1
        await ctx.emit("hello.tick.completed", {"ticks": ticker.ticks})

    return [Task("tick", ctx.config["tick_interval_seconds"], tick)]


@hookimpl
def medianest_health_checks(ctx: PluginContext) -> list[HealthCheck]:
    async def ticking() -> HealthResult:
        return HealthResult("up", f"{_ticker(ctx).ticks} ticks so far")

    return [HealthCheck("ticking", ticking)]


@hookimpl
def medianest_dashboard_widgets(ctx: PluginContext, user: User) -> list[Widget]:
    async def load() -> dict[str, Any]:
        return {"greeting": ctx.config["greeting"], "name": user.name}

    return [Widget("greeting", "Hello", "hello/widgets/greeting.html", load, size="small")]


@hookimpl
def medianest_nav_items(user: User) -> list[NavItem]:
    return [NavItem("Hello", "/api/v1/hello/greeting", icon="home", order=900)]
