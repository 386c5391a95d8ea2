"""Mounting route tables and enforcing the access each route declares.

Every route on the app is registered through `mount_routes`, which records its owner and
access ("public", "user", "admin"). `access_middleware` looks the matched route up and refuses
the request before the handler runs: 401 (API) or a redirect to sign-in (pages) for anonymous
callers, 403 for users on admin routes, 503 while the owning plugin is not connected yet or
has failed (in plain words: people never see setting names).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Awaitable, Callable
from dataclasses import replace
from urllib.parse import quote

from aiohttp import web
from aiohttp.typedefs import Handler

from ..appkeys import PLUGINS, SERVICES
from ..auth.models import User
from ..errors import NotConfigured
from ..looplag import PluginCall, watched
from ..routing import MountedRoute, Routes, mount_path

log = logging.getLogger("medianest.access")

ROUTE_TABLE = web.AppKey("route_table", dict[web.AbstractRoute, MountedRoute])
USER = web.RequestKey("user", User)
# why presented credentials were refused (a bad bearer token), for the 401 message
AUTH_ERROR = web.RequestKey("auth_error", str)


class RouteCollision(Exception):
    """Two plugins want the same method and path."""


def mount_routes(
    app: web.Application, plugin: str, routes: Routes, *, builtin: bool
) -> list[MountedRoute]:
    """Register `routes` for `plugin`; all or nothing: a collision registers none of them."""
    table = app[ROUTE_TABLE]
    taken = {(m.method, m.path): m.plugin for m in table.values()}
    planned: list[tuple[MountedRoute, Callable[..., object]]] = []
    for spec in routes.specs:
        path = mount_path(spec, plugin, builtin=builtin)
        for method in (spec.method, "HEAD") if spec.method == "GET" else (spec.method,):
            owner = taken.get((method, path))
            if owner is not None:
                raise RouteCollision(f"{method} {path} is already served by plugin {owner!r}")
        planned.append(
            (
                MountedRoute(
                    plugin,
                    spec.method,
                    path,
                    spec.access,
                    spec.kind,
                    spec.handler,
                    spec.doc,
                    spec.setup,
                ),
                spec.handler,
            )
        )
        taken[(spec.method, path)] = plugin
    mounted = []
    for info, handler in planned:
        if info.method == "GET":
            route = app.router.add_get(info.path, handler)  # type: ignore[arg-type]
        else:
            route = app.router.add_route(info.method, info.path, handler)  # type: ignore[arg-type]
        table[route] = info
        mounted.append(info)
        for sibling in route.resource or ():
            if sibling.method == "HEAD" and sibling not in table:  # aiohttp's HEAD for a GET
                table[sibling] = replace(info, method="HEAD")
    return mounted


def current_user(request: web.Request) -> User | None:
    """The signed-in person making this request, or None (public routes only)."""
    return request.get(USER)


@web.middleware
async def access_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    match_info = request.match_info
    if match_info.http_exception is not None:
        raise match_info.http_exception  # 404/405 from the router: nothing to guard
    info = request.app[ROUTE_TABLE].get(match_info.route)
    if info is None:
        if isinstance(match_info.route.resource, web.StaticResource):
            return await handler(request)
        log.error("route without declared access refused", extra={"path": request.path})
        raise web.HTTPForbidden(text="This route declares no access.")
    user = request.get(USER)
    if info.access == "public":
        _require_running(request, info, user)
        return await _call(handler, request, info)
    if user is None:
        if info.kind == "api" or AUTH_ERROR in request:
            raise web.HTTPUnauthorized(
                text=request.get(AUTH_ERROR, "Sign in first."),
                headers={"WWW-Authenticate": "Bearer"},
            )
        raise web.HTTPFound(f"/login?next={quote(request.path_qs, safe='/')}")
    if info.access == "admin" and not user.is_admin:
        raise web.HTTPForbidden(text="Only admins may do this.")
    _require_running(request, info, user)
    return await _call(handler, request, info)


def _call(
    handler: Handler, request: web.Request, info: MountedRoute
) -> Awaitable[web.StreamResponse]:
    """The route's handler, each step timed: one that blocks the event loop is named."""
    route = PluginCall(info.plugin, "route", f"{info.method} {info.path}")
    return watched(route, handler(request))


def _require_running(request: web.Request, info: MountedRoute, user: User | None) -> None:
    """Refuse a route of a plugin that is not connected yet, or has failed, in plain words."""
    record = request.app[PLUGINS].records.get(info.plugin)
    if record is None or record.active:
        return
    if info.setup and record.status == "not_configured":
        return
    admin = user is not None and user.is_admin
    if record.status == "not_configured":
        then = (
            "Connect it from the dashboard."
            if admin
            else "An admin needs to connect it first; please try again later."
        )
        raise NotConfigured(f"{record.title} is not connected yet. {then}")
    if record.status == "retrying":  # the plugin's own words: "Plex is not reachable yet"
        reason = (record.error or f"{record.title} is not ready yet").rstrip(". ")
        then = (
            "The Plugins page says when it tries next."
            if admin
            else "Please try again in a few minutes."
        )
        headers = {}
        if record.next_attempt_at is not None:  # a client may come back when it tries next
            wait = (record.next_attempt_at - request.app[SERVICES].clock.now()).total_seconds()
            headers["Retry-After"] = str(max(1, math.ceil(wait)))
        raise web.HTTPServiceUnavailable(
            text=f"{reason}; MediaNest keeps trying. {then}", headers=headers
        )
    if admin and record.error:  # admins read the reason; people plain words
        then = f"It failed at {record.stage or 'start'}: {record.error}"
    else:
        then = "Please try again later."
    raise web.HTTPServiceUnavailable(text=f"{record.title} is not working right now. {then}")
