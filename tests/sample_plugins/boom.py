"""Routes that fail on purpose, to see how the core answers and logs failures."""

import logging

from aiohttp import web

from medianest_server.plugin_api import Routes, hookimpl

SECRET_IN_LOG = "test-secret-key-0123456789-abcdefghijklmnopqrstuvwxyz"

routes = Routes()


@routes.get("/boom", access="public")
@routes.page("/boom", access="public")
async def boom(request: web.Request) -> web.Response:
    logging.getLogger("medianest.test").info("about to fail with %s", SECRET_IN_LOG)
    raise RuntimeError("kaboom")


@routes.post("/echo", access="public")
async def echo_size(request: web.Request) -> web.Response:
    return web.json_response({"size": len(await request.read())})


@hookimpl
def medianest_routes() -> Routes:
    return routes
