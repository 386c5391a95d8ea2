"""Built-in plugin: the admin JSON API (plugin status now; users, settings and audit later)."""

from __future__ import annotations

from aiohttp import web

from ..appkeys import PLUGINS, SERVICES
from ..hookspecs import hookimpl
from ..routing import Routes

routes = Routes()


@routes.get("/api/v1/admin/plugins", access="admin")
async def plugins(request: web.Request) -> web.Response:
    """Every plugin: name, distribution, version, status, failed stage and reason, hooks."""
    services = request.app[SERVICES]
    tasks: dict[str, list[dict[str, object]]] = {}
    for status in services.tasks.status():
        tasks.setdefault(status.owner, []).append(
            {
                "name": status.name,
                "runs": status.runs,
                "failures": status.failures,
                "last_error": status.last_error,
            }
        )
    return web.json_response(
        {
            "plugins": [
                {**record, "tasks": tasks.get(record["name"], [])}
                for record in request.app[PLUGINS].statuses()
            ]
        }
    )


@hookimpl
def medianest_routes() -> Routes:
    return routes
