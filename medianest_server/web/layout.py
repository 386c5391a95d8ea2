"""What every signed-in page's layout shows: menu (core + plugins), unread count, theme."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from ..appkeys import PLUGINS, SERVICES
from ..auth.middleware import AUTH
from ..auth.models import User
from ..auth.services import AUTH_SERVICES
from ..plugins.types import NavItem
from .access import USER

NAV_BUDGET_SECONDS = 0.25
THEMES = ("dark", "light")


def core_nav(user: User) -> list[NavItem]:
    items = [
        NavItem("Dashboard", "/", icon="home", order=0),
        NavItem("Notifications", "/notifications", icon="bell", order=800),
        NavItem("Profile", "/profile", icon="user", order=900),
    ]
    if user.is_admin:
        items.append(NavItem("Admin", "/admin", icon="settings", order=950))
    return items


async def nav_items(request: web.Request, user: User) -> list[NavItem]:
    outcomes = await request.app[PLUGINS].call_each(
        "medianest_nav_items", budget=NAV_BUDGET_SECONDS, user=user
    )
    items = core_nav(user)
    for outcome in outcomes:
        if outcome.record.builtin or not outcome.result:
            continue
        items += [item for item in outcome.result if isinstance(item, NavItem)]
    return sorted(items, key=lambda item: (item.order, item.title))


PREFERENCES = web.RequestKey("preferences", dict[str, Any])


async def user_preferences(request: web.Request) -> dict[str, Any]:
    """The signed-in user's preferences, read once per request."""
    cached = request.get(PREFERENCES)
    if cached is None:
        cached = await request.app[AUTH_SERVICES].preferences.get(request[USER].id)
        request[PREFERENCES] = cached
    return dict(cached)


def csrf_for(request: web.Request) -> str:
    auth = request.get(AUTH)
    if auth is not None and auth.method == "cookie" and auth.session_id:
        return request.app[AUTH_SERVICES].csrf.for_session(auth.session_id)
    return ""


def signed_in_context(request: web.Request) -> dict[str, Any]:
    """The minimum a page needs (error pages use this; they must not fail themselves)."""
    return {
        "current_user": request.get(USER),
        "csrf_token": csrf_for(request),
        "nav": [],
        "unread": 0,
        "theme": "dark",
        "path": request.path,
    }


async def page_context(request: web.Request) -> dict[str, Any]:
    context = signed_in_context(request)
    user = request.get(USER)
    if user is None:
        return context
    services = request.app[SERVICES]
    preferences = await user_preferences(request)
    theme = preferences.get("theme")
    context.update(
        nav=await nav_items(request, user),
        unread=await services.notifications.unread(user.id),
        theme=theme if theme in THEMES else "dark",
    )
    return context
