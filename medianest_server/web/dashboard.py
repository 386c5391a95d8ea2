"""Built-in plugin: the dashboard of plugin widgets, each rendered in isolation.

A widget whose list hook, data loader or template fails (or overruns its budget) becomes an
error card naming its plugin; the page itself always renders. The order is the user's own
(move buttons without JavaScript, drag and drop with it), saved in their preferences.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from markupsafe import Markup
from marshmallow import Schema, fields, validate

from ..appkeys import PLUGINS
from ..auth.models import User
from ..auth.services import AUTH_SERVICES
from ..hookspecs import hookimpl
from ..plugins.types import Widget
from ..routing import Routes
from .access import USER
from .layout import user_preferences
from .templating import page_template
from .validation import load_form, load_json

log = logging.getLogger("medianest.dashboard")
routes = Routes()

WIDGETS_BUDGET_SECONDS = 0.5
WIDGET_LOAD_BUDGET_SECONDS = 3.0


@dataclass(frozen=True)
class RenderedWidget:
    key: str
    plugin: str
    id: str
    title: str
    size: str
    html: Markup
    error: str | None
    refresh_on: tuple[str, ...]


async def _widgets(request: web.Request, user: User) -> list[tuple[str, Widget | None, str | None]]:
    """(plugin, widget, error) for every widget the plugins offer this user."""
    outcomes = await request.app[PLUGINS].call_each(
        "medianest_dashboard_widgets", budget=WIDGETS_BUDGET_SECONDS, user=user
    )
    found: list[tuple[str, Widget | None, str | None]] = []
    for outcome in outcomes:
        plugin = outcome.record.name
        if outcome.error is not None:
            found.append((plugin, None, outcome.error))
            continue
        for widget in outcome.result or ():
            if isinstance(widget, Widget):
                found.append((plugin, widget, None))
    return found


async def render_widget(
    request: web.Request, plugin: str, widget: Widget, user: User
) -> RenderedWidget:
    key = f"{plugin}:{widget.id}"
    try:
        async with asyncio.timeout(WIDGET_LOAD_BUDGET_SECONDS):
            data = await widget.load()
        template = aiohttp_jinja2.get_env(request.app).get_template(widget.template)
        html = Markup(template.render(data=data, widget=widget, user=user))  # noqa: S704 (autoescaped)
        error = None
    except TimeoutError:
        html, error = Markup(""), f"took longer than {WIDGET_LOAD_BUDGET_SECONDS:g} s"
    except Exception as exc:
        html, error = Markup(""), f"{type(exc).__name__}: {exc}"
    if error:
        log.warning("widget failed: %s", error, extra={"plugin": plugin, "widget": widget.id})
    return RenderedWidget(
        key, plugin, widget.id, widget.title, widget.size, html, error, tuple(widget.refresh_on)
    )


def _failed_card(plugin: str, error: str) -> RenderedWidget:
    return RenderedWidget(f"{plugin}:*", plugin, "*", plugin, "medium", Markup(""), error, ())


def _ordered(widgets: list[RenderedWidget], order: list[str]) -> list[RenderedWidget]:
    rank = {key: index for index, key in enumerate(order)}
    return sorted(widgets, key=lambda w: rank.get(w.key, len(rank)))


async def dashboard_widgets(request: web.Request, user: User) -> list[RenderedWidget]:
    offered = await _widgets(request, user)
    rendered = await asyncio.gather(
        *(render_widget(request, plugin, w, user) for plugin, w, _ in offered if w is not None)
    )
    failed = [_failed_card(plugin, error) for plugin, w, error in offered if w is None and error]
    preferences = await user_preferences(request)
    return _ordered([*rendered, *failed], list(preferences.get("widget_order", [])))


def _needs_onboarding(request: web.Request, user: User) -> bool:
    return user.is_admin and not any(not r.builtin for r in request.app[PLUGINS].active())


@routes.page("/", access="user", name="dashboard")
@page_template("dashboard.html")
async def dashboard(request: web.Request) -> dict[str, Any]:
    user = request[USER]
    return {
        "widgets": await dashboard_widgets(request, user),
        "onboarding": _needs_onboarding(request, user),
    }


@routes.page("/dashboard/widgets/{plugin}/{widget_id}", access="user")
async def widget_fragment(request: web.Request) -> web.Response:
    """One widget's card, for live refresh when an event it listens to arrives."""
    user = request[USER]
    plugin, widget_id = request.match_info["plugin"], request.match_info["widget_id"]
    for owner, widget, _ in await _widgets(request, user):
        if owner == plugin and widget is not None and widget.id == widget_id:
            rendered = await render_widget(request, plugin, widget, user)
            return aiohttp_jinja2.render_template("widget_card.html", request, {"widget": rendered})
    raise web.HTTPNotFound()


class MoveForm(Schema):
    key = fields.String(required=True, validate=validate.Length(min=1, max=200))
    direction = fields.String(required=True, validate=validate.OneOf(["up", "down"]))


class OrderBody(Schema):
    order = fields.List(
        fields.String(validate=validate.Length(min=1, max=200)),
        required=True,
        validate=validate.Length(max=200),
    )


@routes.page("/dashboard/move", access="user", method="POST")
async def move_widget(request: web.Request) -> web.Response:
    """Move a widget one place up or down (the no-JavaScript way to reorder)."""
    form = await load_form(request, MoveForm(), ignore=("csrf_token",))
    user = request[USER]
    keys = [w.key for w in await dashboard_widgets(request, user)]
    if form["key"] in keys:
        index = keys.index(form["key"])
        target = index - 1 if form["direction"] == "up" else index + 1
        if 0 <= target < len(keys):
            keys[index], keys[target] = keys[target], keys[index]
            await request.app[AUTH_SERVICES].preferences.update(user.id, widget_order=keys)
    raise web.HTTPSeeOther("/")


@routes.put("/api/v1/me/dashboard", access="user", body=OrderBody)
async def save_order(request: web.Request) -> web.Response:
    """Save the dashboard's widget order (keys `<plugin>:<widget id>`, first to last)."""
    body = await load_json(request, OrderBody())
    prefs = await request.app[AUTH_SERVICES].preferences.update(
        request[USER].id, widget_order=body["order"]
    )
    return web.json_response({"order": prefs["widget_order"]})


@hookimpl
def medianest_routes() -> Routes:
    return routes
