from aiohttp import web

from medianest_server.plugin_api import Routes, hookimpl

routes = Routes()


@routes.get("/status", access="public")
async def status(request: web.Request) -> web.Response:
    return web.json_response({"ok": True})


@hookimpl
def medianest_routes() -> Routes:
    return routes


@hookimpl
async def medianest_startup() -> None:
    raise ConnectionError("cannot reach the upstream at 127.0.0.1:9")
