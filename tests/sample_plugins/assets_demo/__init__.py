"""A third-party plugin using its own static files and the core image proxy, through
`medianest_server.plugin_api` alone: a page and a dashboard widget that add the plugin's CSS and
JS, and posters from a host it declares in its settings."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields

from medianest_server.plugin_api import (
    PluginContext,
    Routes,
    User,
    Widget,
    hookimpl,
    render_page,
)


class AssetsDemoSettings(Schema):
    image_hosts = fields.List(
        fields.String(), load_default=list, metadata={"doc": "hosts whose images it shows"}
    )
    poster_url = fields.String(load_default="", metadata={"doc": "the poster on its page"})


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return AssetsDemoSettings


@hookimpl
def medianest_image_hosts(ctx: PluginContext) -> list[str]:
    return list(ctx.config["image_hosts"])


@hookimpl
def medianest_routes(ctx: PluginContext) -> Routes:
    routes = Routes()

    @routes.page("/", access="user")
    async def poster_page(request: web.Request) -> web.Response:
        poster = ctx.image_url(ctx.config["poster_url"])
        return await render_page(request, "assets_demo/page.html", {"poster": poster})

    @routes.get("/image-url", access="user")
    async def image_url(request: web.Request) -> web.Response:
        """For the tests only: a real plugin signs the addresses its upstream gave it, never
        one a request asks for."""
        return web.json_response({"src": ctx.image_url(request.query.get("url", ""))})

    return routes


@hookimpl
def medianest_dashboard_widgets(ctx: PluginContext, user: User) -> list[Widget]:
    async def load() -> dict[str, Any]:
        return {"poster": ctx.image_url(ctx.config["poster_url"]), "who": user.username}

    return [Widget("poster", "Poster of the day", "assets_demo/widgets/poster.html", load)]
