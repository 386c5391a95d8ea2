"""A plugin whose upstream comes up after MediaNest: its startup says "not ready yet" until the
test flips `upstream_up`, then it starts, with its route, task and cleanup."""

from __future__ import annotations

from collections.abc import AsyncIterator

from aiohttp import web
from marshmallow import Schema, fields

from medianest_server.plugin_api import (
    PluginContext,
    PluginNotReady,
    Routes,
    Task,
    hookimpl,
)

upstream_up = False
broken = False  # a failure that is not "not ready": final
attempts: list[str] = []  # the url each startup attempt used
task_runs: list[int] = []
stopped: list[str] = []


def reset() -> None:
    global upstream_up, broken
    upstream_up = broken = False
    attempts.clear()
    task_runs.clear()
    stopped.clear()


class LateSettings(Schema):
    url = fields.String(load_default="http://upstream.invalid/", metadata={"doc": "upstream"})


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return LateSettings


@hookimpl
async def medianest_startup(ctx: PluginContext) -> AsyncIterator[None]:
    attempts.append(ctx.config["url"])
    if broken:
        raise RuntimeError("the upstream answered nonsense")
    if not upstream_up:
        raise PluginNotReady("Late Upstream is not reachable yet")
    yield
    stopped.append(ctx.config["url"])


@hookimpl
def medianest_routes(ctx: PluginContext) -> Routes:
    routes = Routes()

    @routes.get("/status", access="public")
    async def status(request: web.Request) -> web.Response:
        return web.json_response({"url": ctx.config["url"]})

    return routes


@hookimpl
def medianest_background_tasks() -> list[Task]:
    async def sync() -> None:
        task_runs.append(len(task_runs))

    return [Task("sync", 3600, sync)]
