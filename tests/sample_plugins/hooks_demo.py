"""A plugin that takes webhooks, offers a sign-in method and cleans up after deleted users."""

from __future__ import annotations

from pathlib import Path

from aiohttp import web

from medianest_server.plugin_api import (
    ExternalIdentity,
    LoginProvider,
    PluginContext,
    Routes,
    User,
    Webhook,
    current_user,
    hookimpl,
)

received: list[dict[str, object]] = []
removed: list[int] = []


async def item(request: web.Request) -> web.Response:
    return web.json_response({"id": int(request.match_info["item_id"])})


async def delete_item(request: web.Request) -> web.Response:
    return web.json_response({"deleted": True})


async def library(request: web.Request) -> web.Response:
    return web.Response(text="library", content_type="text/html")


@hookimpl
def medianest_routes(ctx: PluginContext) -> Routes:
    """A table per app: routes that close over `ctx` belong to one app instance."""
    routes = Routes()
    routes.get("/items/{item_id:\\d+}", access="user")(item)
    routes.delete("/items/{item_id:\\d+}", access="admin")(delete_item)
    routes.page("/library", access="user")(library)

    @routes.page("/start", access="public")
    async def start(request: web.Request) -> web.Response:
        """A login flow reduced to its end: the provider already knows who this is."""
        identity = ExternalIdentity(
            provider="demo",
            subject=request.query["subject"],
            username=request.query["name"],
            role="admin" if request.query.get("owner") else "user",
            display_name=request.query["name"].title(),
            avatar_url=request.query.get("avatar"),
            secret=f"upstream-token-{request.query['subject']}",
        )
        await ctx.complete_login(request, identity)
        raise web.HTTPSeeOther("/")

    @routes.get("/my-secret", access="user")
    async def my_secret(request: web.Request) -> web.Response:
        user = current_user(request)
        assert user is not None
        return web.json_response({"has": bool(await ctx.user_secret(user.id, "demo"))})

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
