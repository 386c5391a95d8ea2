"""Built-in plugin: the admin pages: users, plugins and their settings, audit log, health.

Every action is a plain form post (works without JavaScript) answered with a redirect or the
page again with a message; the same rules as the admin API apply, through the same functions.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..appkeys import HEALTH, PLUGINS, SERVICES
from ..auth import administration
from ..auth.models import ROLES
from ..auth.services import AUTH_SERVICES, AuthServices
from ..errors import MediaNestError
from ..healthchecks import PAGE_MAX_AGE_SECONDS, CheckOutcome
from ..hookspecs import hookimpl
from ..looplag import LOOP_LAG
from ..plugins import runtime
from ..plugins.loader import PluginRecord
from ..plugins.runtime import apply_settings, plugin_settings, setup_actions
from ..routing import Routes
from ..settings import PluginSettings
from .access import USER
from .templating import page_template, render_page
from .validation import load_form, load_query, path_id
from .webhooks import webhook_urls

routes = Routes()
CSRF = ("csrf_token",)
PER_PAGE = 25


class UsersQuery(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=100))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


class NewUserForm(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    role = fields.String(load_default="user", validate=validate.OneOf(ROLES))


class RoleForm(Schema):
    role = fields.String(required=True, validate=validate.OneOf(ROLES))


class DisabledForm(Schema):
    disabled = fields.Boolean(required=True)


class EnabledForm(Schema):
    enabled = fields.Boolean(required=True)


class AuditPageQuery(Schema):
    action = fields.String(load_default="", validate=validate.Length(max=100))
    actor = fields.String(load_default="", validate=validate.Length(max=64))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))


def _auth(request: web.Request) -> AuthServices:
    return request.app[AUTH_SERVICES]


def _settings(request: web.Request) -> PluginSettings:
    return plugin_settings(request.app)


async def _form(request: web.Request) -> dict[str, str]:
    form = {k: v for k, v in (await request.post()).items() if isinstance(v, str)}
    form.pop("csrf_token", None)
    return form


async def save_and_apply(
    request: web.Request,
    name: str,
    form: dict[str, str],
    *,
    only: Sequence[str] | None = None,
) -> tuple[list[str], PluginRecord]:
    """Save a plugin's settings from a form, apply them now, and audit who changed what.
    Returns the changed keys and the plugin's record (its new status)."""
    changed = _settings(request).save(name, form, only=only)
    await _audit_settings(request, name, {"keys": changed})
    return changed, await apply_settings(request.app, name)


async def _audit_settings(request: web.Request, plugin: str, details: dict[str, Any]) -> None:
    """The audit line of an admin's change to a plugin's settings."""
    await _auth(request).audit.record(
        "settings.changed",
        actor=request[USER],
        ip=request.remote,
        target_type="plugin",
        target_id=plugin,
        details=details,
    )


def applied_message(record: PluginRecord) -> str:
    """What an admin reads after saving a plugin's settings, by the plugin's new status."""
    if record.status == "active":
        return f"Saved. {record.title} is connected and running with these settings."
    if record.status == "not_configured":
        return f"Saved. {record.title} still needs: {', '.join(record.missing)}."
    if record.status == "failed":
        return f"Saved, but {record.title} could not start: {record.error}"
    if record.status == "retrying":
        return (
            f"Saved. {record.title} cannot reach its service yet ({record.error}); "
            "MediaNest keeps trying with these settings."
        )
    return f"Saved. {record.title} is {record.status}; the settings apply when it is enabled."


def outcomes_json(outcomes: Sequence[CheckOutcome]) -> web.Response:
    """ "Test connection" answered to the settings form's script."""
    return web.json_response(
        {
            "results": [
                {
                    "name": o.name,
                    "status": o.status,
                    "message": o.message,
                    "latency_ms": o.latency_ms,
                }
                for o in outcomes
            ]
        }
    )


@routes.page("/admin", access="admin", name="admin")
async def overview(request: web.Request) -> web.Response:
    raise web.HTTPFound("/admin/users")


async def _users_page(
    request: web.Request,
    *,
    status: int = 200,
    message: str | None = None,
    error: str | None = None,
) -> web.Response:
    query = load_query(request, UsersQuery())
    users, total = await _auth(request).users.search(
        query=query["q"], page=query["page"], per_page=PER_PAGE
    )
    context = {
        "users": [u.as_dict() for u in users],
        "total": total,
        "q": query["q"],
        "page": query["page"],
        "pages": max(1, (total + PER_PAGE - 1) // PER_PAGE),
        "roles": ROLES,
        "message": message,
        "error": error,
        "section": "users",
    }
    return await render_page(request, "admin/users.html", context, status=status)


@routes.page("/admin/users", access="admin")
async def users(request: web.Request) -> web.Response:
    return await _users_page(request)


async def _user_action(request: web.Request, action: Any) -> web.Response:
    """Run an admin action; its refusal (last admin, yourself) is shown on the page."""
    try:
        message = await action()
    except MediaNestError as exc:
        return await _users_page(request, status=exc.status, error=exc.message)
    return await _users_page(request, message=message)


def _target(request: web.Request) -> int:
    return path_id(request, "user_id")


@routes.page("/admin/users", access="admin", method="POST")
async def create_user(request: web.Request) -> web.Response:
    async def act() -> str:
        form = await load_form(request, NewUserForm(), ignore=CSRF)
        created = await administration.create_user(
            _auth(request),
            request[USER],
            form["username"],
            form["password"],
            role=form["role"],
            ip=request.remote,
        )
        return f"Created {created.user.username}."

    return await _user_action(request, act)


@routes.page("/admin/users/{user_id:[0-9]+}/role", access="admin", method="POST")
async def change_role(request: web.Request) -> web.Response:
    async def act() -> str:
        form = await load_form(request, RoleForm(), ignore=CSRF)
        changed = await administration.update_user(
            _auth(request), request[USER], _target(request), role=form["role"], ip=request.remote
        )
        return f"{changed.user.username} is now {changed.user.role}."

    return await _user_action(request, act)


@routes.page("/admin/users/{user_id:[0-9]+}/disabled", access="admin", method="POST")
async def change_disabled(request: web.Request) -> web.Response:
    async def act() -> str:
        form = await load_form(request, DisabledForm(), ignore=CSRF)
        changed = await administration.update_user(
            _auth(request),
            request[USER],
            _target(request),
            disabled=form["disabled"],
            ip=request.remote,
        )
        state = "disabled and signed out" if changed.user.disabled else "enabled"
        return f"{changed.user.username} is {state}."

    return await _user_action(request, act)


@routes.page("/admin/users/{user_id:[0-9]+}/delete", access="admin", method="POST")
async def delete_user(request: web.Request) -> web.Response:
    async def act() -> str:
        removed = await administration.delete_user(
            _auth(request), request[USER], _target(request), ip=request.remote
        )
        return f"Deleted {removed.username} and everything that was theirs."

    return await _user_action(request, act)


@routes.page("/admin/users/{user_id:[0-9]+}/sessions/revoke", access="admin", method="POST")
async def revoke_sessions(request: web.Request) -> web.Response:
    async def act() -> str:
        ended = await administration.revoke_user_sessions(
            _auth(request), request[USER], _target(request), ip=request.remote
        )
        return f"Signed out of {ended} session(s)."

    return await _user_action(request, act)


async def _plugins_page(
    request: web.Request,
    *,
    status: int = 200,
    message: str | None = None,
    error: str | None = None,
    errors: dict[str, Any] | None = None,
    tested: Any = None,
) -> web.Response:
    settings = _settings(request)
    plugins = []
    for record in request.app[PLUGINS].records.values():
        if record.builtin:
            continue
        plugins.append(
            {
                **record.as_dict(),
                "fields": settings.fields(record),
                "webhooks": webhook_urls(request.app, record.name) if record.active else [],
                "actions": await setup_actions(request.app, record),
            }
        )
    context = {
        "plugins": plugins,
        "message": message,
        "error": error,
        "errors": errors or {},
        "tested": tested,
        "section": "plugins",
    }
    return await render_page(request, "admin/plugins.html", context, status=status)


@routes.page("/admin/plugins", access="admin")
async def plugins(request: web.Request) -> web.Response:
    return await _plugins_page(request)


@routes.page("/admin/plugins/{name}/settings", access="admin", method="POST")
async def save_settings(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    form = await _form(request)
    try:
        changed, record = await save_and_apply(request, name, form)
    except MediaNestError as exc:
        details = exc.details if isinstance(exc.details, dict) else {}
        return await _plugins_page(
            request, status=exc.status, error=exc.message, errors={name: details}
        )
    note = ", ".join(changed) if changed else "nothing"
    return await _plugins_page(
        request,
        message=f"{applied_message(record)} ({note} changed in medianest.toml; the previous "
        "file is medianest.toml.bak.)",
    )


@routes.page("/admin/plugins/{name}/enabled", access="admin", method="POST")
async def set_enabled(request: web.Request) -> web.Response:
    name = request.match_info["name"]
    try:
        form = await load_form(request, EnabledForm(), ignore=CSRF)
        _settings(request).set_enabled(name, form["enabled"])
    except MediaNestError as exc:
        return await _plugins_page(request, status=exc.status, error=exc.message)
    await _audit_settings(request, name, {"enabled": form["enabled"]})
    state = "enabled" if form["enabled"] else "disabled"
    return await _plugins_page(request, message=f"{name} will be {state} at the next start.")


@routes.page("/admin/plugins/{name}/test", access="admin", method="POST")
async def test_connection(request: web.Request) -> web.Response:
    """Try the values in the form (the plugin's own test), else its health checks; nothing is
    saved. JSON for the form's script, the page again without it."""
    name = request.match_info["name"]
    form = await _form(request)
    try:
        outcomes = await runtime.test_connection(request.app, name, form or None)
    except MediaNestError as exc:
        if "json" in request.headers.get("Accept", ""):
            raise
        details = exc.details if isinstance(exc.details, dict) else {}
        return await _plugins_page(
            request, status=exc.status, error=exc.message, errors={name: details}
        )
    if "json" in request.headers.get("Accept", ""):
        return outcomes_json(outcomes)
    tested = {"plugin": name, "outcomes": outcomes}
    return await _plugins_page(request, tested=tested)


@routes.page("/admin/audit", access="admin")
@page_template("admin/audit.html")
async def audit(request: web.Request) -> dict[str, Any]:
    query = load_query(request, AuditPageQuery())
    entries, total = await _auth(request).audit.search(
        action=query["action"] or None,
        actor=query["actor"] or None,
        page=query["page"],
        per_page=50,
    )
    return {
        "entries": [e.as_dict() for e in entries],
        "total": total,
        "action": query["action"],
        "actor": query["actor"],
        "page": query["page"],
        "pages": max(1, (total + 49) // 50),
        "section": "audit",
    }


@routes.page("/admin/health", access="admin")
@page_template("admin/health.html")
async def health(request: web.Request) -> dict[str, Any]:
    """Database, Redis, every plugin's health checks (run now), the background tasks and the
    supervised connections."""
    from ..connections import CONNECTIONS

    services = request.app[SERVICES]
    started = time.perf_counter()
    try:
        await services.db.ping()
        database = {"status": "up", "latency_ms": round((time.perf_counter() - started) * 1000, 2)}
    except Exception as exc:
        database = {"status": "down", "message": str(exc)}
    return {
        "database": database,
        "database_url": services.db.url_for_display,
        "backend": services.backend,
        # a result of the last few seconds is shown again: a hanging check costs one wait
        "checks": await request.app[HEALTH].run(max_age_seconds=PAGE_MAX_AGE_SECONDS),
        "loop_lag": request.app[LOOP_LAG].summary(),
        "tasks": services.tasks.status(),
        "connections": request.app[CONNECTIONS].status(),
        "upstreams": services.http.stats(),
        "section": "health",
    }


@hookimpl
def medianest_routes() -> Routes:
    return routes
