"""A plugin that takes webhooks, offers a sign-in method and cleans up after deleted users."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from medianest_server.plugin_api import (
    LoginProvider,
    PluginContext,
    Routes,
    User,
    Webhook,
    hookimpl,
)

received: list[dict[str, object]] = []
removed: list[int] = []
routes = Routes()


@routes.get("/items/{item_id:\\d+}", access="user")
async def item(request: web.Request) -> web.Response:
    return web.json_response({"id": int(request.match_info["item_id"])})


@routes.delete("/items/{item_id:\\d+}", access="admin")
async def delete_item(request: web.Request) -> web.Response:
    return web.json_response({"deleted": True})


@routes.page("/library", access="user")
async def library(request: web.Request) -> web.Response:
    return web.Response(text="library", content_type="text/html")


@hookimpl
def medianest_routes() -> Routes:
    return routes


@hookimpl
def medianest_webhooks(ctx: PluginContext) -> list[Webhook]:
    async def ping(request: web.Request) -> web.Response:
        received.append(await request.json())
        await ctx.emit("hooks_demo.ping.received", {"count": len(received)})
        return web.json_response({"ok": True})

    return [Webhook("ping", ping, secret_header="X-Demo-Secret")]


@hookimpl
def medianest_login_providers() -> list[LoginProvider]:
    return [LoginProvider("demo", "Sign in with Demo", "/hooks_demo/start")]


@hookimpl
def medianest_user_removed(ctx: PluginContext, user: User) -> None:
    removed.append(user.id)
    (Path(ctx.data_dir) / f"user-{user.id}.txt").unlink(missing_ok=True)
