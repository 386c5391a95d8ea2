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
from ..errors import MediaNestError
from ..healthchecks import CheckOutcome
from ..hookspecs import hookimpl
from ..looplag import PluginCall, running, watched
from ..plugins.runtime import plugin_settings, setup_actions, test_connection
from ..plugins.types import SetupAction, Widget
from ..routing import Routes
from ..settings import SettingField
from .access import USER
from .admin_pages import applied_message, outcomes_json, save_and_apply
from .layout import user_preferences
from .templating import render_page
from .validation import load_form, load_json, load_query

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
    call = PluginCall(plugin, "widget", widget.id)  # named if it blocks the event loop
    try:
        async with asyncio.timeout(WIDGET_LOAD_BUDGET_SECONDS):
            data = await watched(call, widget.load())
        template = aiohttp_jinja2.get_env(request.app).get_template(widget.template)
        with running(call):
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


@dataclass
class ConnectCard:
    """A plugin waiting for its setup settings, as the admin's dashboard offers it."""

    name: str
    title: str
    missing: list[str]
    fields: list[SettingField]
    actions: list[SetupAction]
    tested: list[CheckOutcome] | None = None
    error: str | None = None
    errors: dict[str, Any] | None = None
    typed: dict[str, str] | None = None  # what the admin typed (never secrets), shown again


async def _connect_cards(request: web.Request, user: User) -> list[ConnectCard]:
    """One "Connect" card per installed plugin that is not configured yet (admins only)."""
    if not user.is_admin:
        return []
    settings = plugin_settings(request.app)
    return [
        ConnectCard(
            record.name,
            record.title,
            list(record.missing),
            settings.fields(record, setup_only=True),
            await setup_actions(request.app, record),
        )
        for record in request.app[PLUGINS].records.values()
        if not record.builtin and record.status == "not_configured"
    ]


async def _render_dashboard(
    request: web.Request,
    *,
    card: ConnectCard | None = None,
    status: int = 200,
    connected: str | None = None,
) -> web.Response:
    user = request[USER]
    cards = await _connect_cards(request, user)
    if card is not None:
        cards = [card if c.name == card.name else c for c in cards]
    installed = any(not r.builtin for r in request.app[PLUGINS].records.values())
    broken = [
        {
            "title": r.title,
            "name": r.name,
            "stage": r.stage,
            "error": r.error,
            "retrying": r.status == "retrying",
            "next_attempt_at": r.next_attempt_at,
        }
        for r in request.app[PLUGINS].records.values()
        if user.is_admin and not r.builtin and r.status in ("failed", "retrying")
    ]
    context = {
        "broken_plugins": broken,
        "widgets": await dashboard_widgets(request, user),
        "connect_cards": cards,
        "nothing_installed": user.is_admin and not installed,
        "connected": connected,
    }
    return await render_page(request, "dashboard.html", context, status=status)


class DashboardQuery(Schema):
    connected = fields.String(load_default="", validate=validate.Length(max=40))


@routes.page("/", access="user", name="dashboard")
async def dashboard(request: web.Request) -> web.Response:
    query = load_query(request, DashboardQuery())
    record = request.app[PLUGINS].records.get(query["connected"])
    connected = record.title if record is not None and record.active else None
    return await _render_dashboard(request, connected=connected)


async def _connect_form(request: web.Request) -> tuple[str, dict[str, str], list[str]]:
    name = request.match_info["name"]
    record = plugin_settings(request.app).record(name)  # 404 for an unknown plugin
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    form.pop("csrf_token", None)
    return name, form, list(record.setup_keys)


def _card_again(request: web.Request, name: str, form: dict[str, str]) -> ConnectCard | None:
    """The plugin's card with what the admin typed in it (secrets are never sent back)."""
    record = request.app[PLUGINS].records[name]
    if record.status != "not_configured":
        return None
    fields_ = plugin_settings(request.app).fields(record, setup_only=True)
    typed = {f.name: form.get(f.name, "") for f in fields_ if not f.secret}
    return ConnectCard(name, record.title, list(record.missing), fields_, [], typed=typed)


@routes.page("/dashboard/connect/{name}", access="admin", method="POST")
async def connect(request: web.Request) -> web.Response:
    """Save a plugin's setup settings from its "Connect" card and start it now."""
    name, form, keys = await _connect_form(request)
    try:
        _, record = await save_and_apply(request, name, form, only=keys)
    except MediaNestError as exc:
        card = _card_again(request, name, form)
        if card is None:
            raise
        card.error = exc.message
        card.errors = exc.details if isinstance(exc.details, dict) else {}
        card.actions = await setup_actions(request.app, request.app[PLUGINS].records[name])
        return await _render_dashboard(request, card=card, status=exc.status)
    if record.active:
        raise web.HTTPSeeOther(f"/?connected={name}")
    card = _card_again(request, name, form)
    if card is not None:
        card.error = applied_message(record)
        card.actions = await setup_actions(request.app, record)
    return await _render_dashboard(request, card=card, status=200)


@routes.page("/dashboard/connect/{name}/test", access="admin", method="POST")
async def connect_test(request: web.Request) -> web.Response:
    """ "Test connection" on a "Connect" card: the typed values are tried, nothing is saved."""
    name, form, keys = await _connect_form(request)
    wants_json = "json" in request.headers.get("Accept", "")
    card = _card_again(request, name, form)
    try:
        outcomes = await test_connection(request.app, name, form, only=keys)
    except MediaNestError as exc:
        if wants_json or card is None:
            raise
        card.error = exc.message
        card.errors = exc.details if isinstance(exc.details, dict) else {}
        return await _render_dashboard(request, card=card, status=exc.status)
    if wants_json:
        return outcomes_json(outcomes)
    if card is not None:
        card.tested = outcomes
        card.actions = await setup_actions(request.app, request.app[PLUGINS].records[name])
    return await _render_dashboard(request, card=card)


@routes.page("/dashboard/widgets/{plugin}/{widget_id}", access="user")
async def widget_fragment(request: web.Request) -> web.Response:
    """One widget's card, for live refresh when an event it listens to arrives."""
    user = request[USER]
    plugin, widget_id = request.match_info["plugin"], request.match_info["widget_id"]
    for owner, widget, _ in await _widgets(request, user):
        if owner == plugin and widget is not None and widget.id == widget_id:
            rendered = await render_widget(request, plugin, widget, user)
            context = {"widget": rendered, "current_user": user}
            return aiohttp_jinja2.render_template("widget_card.html", request, context)
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
