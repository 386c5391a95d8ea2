"""Built-in plugin: the core's HTML pages."""

from __future__ import annotations

from typing import Any

import aiohttp_jinja2
from aiohttp import web

from .. import __version__
from ..hookspecs import hookimpl
from ..routing import Routes

routes = Routes()


@routes.page("/", access="user", name="home")
@aiohttp_jinja2.template("home.html")
async def home(request: web.Request) -> dict[str, Any]:
    return {"version": __version__}


@hookimpl
def medianest_routes() -> Routes:
    return routes
