"""A plugin that blocks the event loop by mistake, as a third party might: `time.sleep` in a
route handler and in a widget's data loader (the fix is `await asyncio.to_thread(...)`)."""

from __future__ import annotations

import time

from aiohttp import web

from medianest_server.plugin_api import Routes, Widget, hookimpl

# longer than the core's threshold for naming a block (half a second)
BLOCK_SECONDS = 0.6

routes = Routes()


@routes.page("/", access="public")
async def slow_page(request: web.Request) -> web.Response:
    time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 (the mistake under test)
    return web.Response(text="<h1>finally</h1>", content_type="text/html")


@hookimpl
def medianest_routes() -> Routes:
    return routes


@hookimpl
def medianest_dashboard_widgets() -> list[Widget]:
    async def load() -> dict[str, str]:
        time.sleep(BLOCK_SECONDS)  # noqa: ASYNC251 (the mistake under test)
        return {"state": "loaded at last"}

    return [Widget("slow", "Slow", "blocking/widget.html", load)]
