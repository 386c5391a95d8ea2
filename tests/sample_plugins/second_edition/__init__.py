"""A third-party plugin that uses every addition of the contract's second edition, through
`medianest_server.plugin_api` only (tests/test_second_edition.py drives it): setup settings
with a Connect card and its own way in, a test connection, a startup that is not ready until
its upstream is, a supervised connection, its own static files, images from another host,
linked identities, notifications to every admin, and a playlist job with children that each
run a process group."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields

from medianest_server.plugin_api import (
    ConnectionLink,
    HealthResult,
    Job,
    JobContext,
    JobSpec,
    LiveConnection,
    PluginContext,
    PluginNotReady,
    Routes,
    SetupAction,
    Worker,
    current_user,
    hookimpl,
    render_page,
    run_process_group,
)

PLUGIN_TITLE = "Second Edition"
# what the test controls: whether the upstream answers, and where its images live
state: dict[str, Any] = {"upstream_up": False, "connections": 0, "image_base": ""}


class Settings(Schema):
    url = fields.String(
        load_default="",
        metadata={"label": "Service address", "doc": "Where the service answers", "setup": True},
    )


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return Settings


@hookimpl
async def medianest_test_connection(settings: dict[str, Any]) -> HealthResult:
    return HealthResult("up", f"The service answers at {settings['url']}.")


@hookimpl
def medianest_setup_actions() -> list[SetupAction]:
    return [SetupAction("Connect it for me", "/second_edition/setup", "Finds the service")]


@hookimpl
async def medianest_startup(ctx: PluginContext) -> AsyncIterator[None]:
    if not state["upstream_up"]:
        raise PluginNotReady("the service is not reachable yet")
    yield


@hookimpl
def medianest_image_hosts() -> list[str]:
    return ["127.0.0.1"]


@hookimpl
def medianest_connections() -> list[LiveConnection]:
    async def feed(link: ConnectionLink) -> None:
        link.connected()
        state["connections"] += 1
        await asyncio.Event().wait()  # held open until the core stops it

    return [LiveConnection("feed", feed)]


@hookimpl
def medianest_routes(ctx: PluginContext) -> Routes:
    routes = Routes()

    @routes.page("/setup", access="admin", setup=True)
    async def setup(request: web.Request) -> web.StreamResponse:
        await ctx.save_settings({"url": "http://127.0.0.1:9"})
        raise web.HTTPSeeOther("/")

    @routes.page("/", access="user")
    async def page(request: web.Request) -> web.StreamResponse:
        poster = ctx.image_url(f"{state['image_base']}/poster.jpg") if state["image_base"] else None
        return await render_page(request, "second_edition/page.html", {"poster": poster})

    @routes.get("/me", access="user")
    async def me(request: web.Request) -> web.Response:
        user = current_user(request)
        assert user is not None
        identity = await ctx.identity(user.id, "plex")
        return web.json_response({"plex_id": identity.subject if identity else None})

    @routes.post("/alert", access="admin")
    async def alert(request: web.Request) -> web.Response:
        told = await ctx.notify("admins", "The service is down", link="/admin/health")
        return web.json_response({"told": told})

    @routes.post("/playlist", access="user")
    async def playlist(request: web.Request) -> web.Response:
        user = current_user(request)
        assert user is not None
        parent = await ctx.jobs.enqueue_parent(
            "second_edition",
            "playlist",
            {},
            children=[JobSpec("video", {"n": n}) for n in (1, 2)],
            user_id=user.id,
        )

        async def video(job: Job, context: JobContext) -> dict[str, int]:
            async with run_process_group(["sh", "-c", "exit 0"]) as process:
                code = await process.wait()
            await context.progress({"percent": 100})
            return {"exit": code}

        worker = Worker(ctx.jobs, queues=["second_edition"], handlers={"video": video})
        await worker.run_until_idle()
        done = await ctx.jobs.get(parent.id)
        assert done is not None
        return web.json_response({"status": done.status, "progress": done.progress})

    return routes
