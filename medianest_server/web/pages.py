"""Built-in plugin: the search page and the notifications page."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..appkeys import PLUGINS, SERVICES
from ..hookspecs import hookimpl
from ..plugins.types import SearchGroup
from ..routing import Routes
from .access import USER
from .templating import page_template
from .validation import load_query, path_id

routes = Routes()
SEARCH_BUDGET_SECONDS = 3.0


class SearchQuery(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=200))


class NotificationsQuery(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    unread = fields.Boolean(load_default=False)


async def search_groups(request: web.Request, query: str) -> list[SearchGroup]:
    """Every plugin's results, one group each; a plugin that fails shows its error, not a 500."""
    outcomes = await request.app[PLUGINS].call_each(
        "medianest_search", budget=SEARCH_BUDGET_SECONDS, user=request[USER], query=query
    )
    groups = []
    for outcome in outcomes:
        if outcome.error is not None:
            groups.append(SearchGroup(outcome.record.name, (), error=outcome.error))
        elif isinstance(outcome.result, SearchGroup):
            groups.append(outcome.result)
    return groups


@routes.page("/search", access="user", name="search")
@page_template("search.html")
async def search(request: web.Request) -> dict[str, Any]:
    query = load_query(request, SearchQuery())["q"].strip()
    groups = await search_groups(request, query) if query else []
    return {"query": query, "groups": groups}


@routes.get("/api/v1/search", access="user", query=SearchQuery)
async def search_api(request: web.Request) -> web.Response:
    """Search every plugin at once; results grouped by plugin."""
    query = load_query(request, SearchQuery())["q"].strip()
    groups = await search_groups(request, query) if query else []
    return web.json_response(
        {
            "query": query,
            "groups": [
                {
                    "title": g.title,
                    "error": g.error,
                    "more_url": g.more_url,
                    "results": [
                        {
                            "title": r.title,
                            "url": r.url,
                            "subtitle": r.subtitle,
                            "image_url": r.image_url,
                            "kind": r.kind,
                        }
                        for r in g.results
                    ],
                }
                for g in groups
            ],
        }
    )


@routes.page("/notifications", access="user", name="notifications")
@page_template("notifications.html")
async def notifications(request: web.Request) -> dict[str, Any]:
    query = load_query(request, NotificationsQuery())
    items, total, unread = await request.app[SERVICES].notifications.list(
        request[USER].id,
        unread_only=query["unread"],
        page=query["page"],
        per_page=25,
    )
    return {
        "notifications": items,
        "total": total,
        "unread_total": unread,
        "page": query["page"],
        "pages": max(1, (total + 24) // 25),
        "unread_only": query["unread"],
    }


@routes.page("/notifications/{notification_id:[0-9]+}/read", access="user", method="POST")
async def read_one(request: web.Request) -> web.Response:
    await request.app[SERVICES].notifications.mark_read(
        request[USER].id, path_id(request, "notification_id")
    )
    raise web.HTTPSeeOther("/notifications")


@routes.page("/notifications/read-all", access="user", method="POST")
async def read_all(request: web.Request) -> web.Response:
    await request.app[SERVICES].notifications.mark_read(request[USER].id, None)
    raise web.HTTPSeeOther("/notifications")


@hookimpl
def medianest_routes() -> Routes:
    return routes
