"""Built-in plugin: the admin JSON API: users, the audit log, plugin status."""

from __future__ import annotations

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..appkeys import PLUGINS, SERVICES
from ..auth import administration
from ..auth.models import ROLES
from ..auth.services import AUTH_SERVICES, AuthServices
from ..errors import InvalidInput
from ..hookspecs import hookimpl
from ..routing import Routes
from .access import USER
from .api_schemas import (
    AuditPage,
    Deleted,
    PluginList,
    SessionsEnded,
    UserDetails,
    UserPage,
)
from .validation import load_json, load_query, path_id

routes = Routes()


class UserQuery(Schema):
    q = fields.String(load_default="", validate=validate.Length(max=100))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1, max=200))


class NewUser(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    role = fields.String(load_default="user", validate=validate.OneOf(ROLES))
    display_name = fields.String(
        load_default=None, allow_none=True, validate=validate.Length(max=100)
    )
    email = fields.Email(load_default=None, allow_none=True)


class UserChange(Schema):
    role = fields.String(validate=validate.OneOf(ROLES))
    disabled = fields.Boolean()


class AuditQuery(Schema):
    action = fields.String(load_default=None, validate=validate.Length(max=100))
    actor = fields.String(load_default=None, validate=validate.Length(max=64))
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=50, validate=validate.Range(min=1, max=500))


def _auth(request: web.Request) -> AuthServices:
    return request.app[AUTH_SERVICES]


def _user_id(request: web.Request) -> int:
    return path_id(request, "user_id")


@routes.get("/api/v1/admin/users", access="admin", query=UserQuery, response=UserPage)
async def list_users(request: web.Request) -> web.Response:
    """Users matching `q` (username, name or email), a page at a time."""
    query = load_query(request, UserQuery())
    users, total = await _auth(request).users.search(
        query=query["q"], page=query["page"], per_page=query["per_page"]
    )
    return web.json_response(
        {"users": [u.as_dict() for u in users], "total": total, "page": query["page"]}
    )


@routes.post(
    "/api/v1/admin/users",
    access="admin",
    body=NewUser,
    response=UserDetails,
    status=201,
    errors=(409,),
)
async def create_user(request: web.Request) -> web.Response:
    """A local account with a password (people with Plex accounts sign in with Plex instead)."""
    body = await load_json(request, NewUser())
    created = await administration.create_user(
        _auth(request),
        request[USER],
        body["username"],
        body["password"],
        role=body["role"],
        display_name=body["display_name"],
        email=body["email"],
        ip=request.remote,
    )
    return web.json_response(created.as_dict(), status=201)


@routes.get("/api/v1/admin/users/{user_id:[0-9]+}", access="admin", response=UserDetails)
async def get_user(request: web.Request) -> web.Response:
    """One user, as admins see them."""
    return web.json_response((await _auth(request).users.details(_user_id(request))).as_dict())


@routes.patch(
    "/api/v1/admin/users/{user_id:[0-9]+}", access="admin", body=UserChange, response=UserDetails
)
async def change_user(request: web.Request) -> web.Response:
    """Change `role` and/or `disabled`; disabling ends the user's sessions at once."""
    body = await load_json(request, UserChange())
    if not body:
        raise InvalidInput("nothing to change: give role and/or disabled")
    changed = await administration.update_user(
        _auth(request),
        request[USER],
        _user_id(request),
        role=body.get("role"),
        disabled=body.get("disabled"),
        ip=request.remote,
    )
    return web.json_response(changed.as_dict())


@routes.delete("/api/v1/admin/users/{user_id:[0-9]+}", access="admin", response=Deleted)
async def delete_user(request: web.Request) -> web.Response:
    """Delete a user with everything that is theirs, in every plugin."""
    await administration.delete_user(
        _auth(request), request[USER], _user_id(request), ip=request.remote
    )
    return web.json_response({"deleted": True})


@routes.delete(
    "/api/v1/admin/users/{user_id:[0-9]+}/sessions", access="admin", response=SessionsEnded
)
async def revoke_user_sessions(request: web.Request) -> web.Response:
    """Sign a user out everywhere."""
    ended = await administration.revoke_user_sessions(
        _auth(request), request[USER], _user_id(request), ip=request.remote
    )
    return web.json_response({"sessions_ended": ended})


@routes.get("/api/v1/admin/audit", access="admin", query=AuditQuery, response=AuditPage)
async def audit(request: web.Request) -> web.Response:
    """The audit log, newest first; filter by `action` prefix and `actor` name."""
    query = load_query(request, AuditQuery())
    entries, total = await _auth(request).audit.search(
        action=query["action"],
        actor=query["actor"],
        page=query["page"],
        per_page=query["per_page"],
    )
    return web.json_response(
        {"entries": [e.as_dict() for e in entries], "total": total, "page": query["page"]}
    )


@routes.get("/api/v1/admin/plugins", access="admin", response=PluginList)
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


DIAGNOSTICS_BUDGET_SECONDS = 5.0


@routes.get("/api/v1/admin/diagnostics", access="admin")
async def diagnostics(request: web.Request) -> web.Response:
    """The support bundle: versions, storage, plugin status and each plugin's diagnostics.

    Secrets are redacted: every configured secret value and anything credential-shaped.
    """
    import json
    import platform

    from .. import __version__
    from ..connections import CONNECTIONS
    from ..logs import redactor
    from ..looplag import LOOP_LAG

    services = request.app[SERVICES]
    manager = request.app[PLUGINS]
    outcomes = await manager.call_each("medianest_diagnostics", budget=DIAGNOSTICS_BUDGET_SECONDS)
    plugins_facts = {o.record.name: ({"error": o.error} if o.error else o.result) for o in outcomes}
    bundle = {
        "medianest": __version__,
        "python": platform.python_version(),
        "database": services.db.url_for_display,
        "backend": services.backend,
        "plugins": manager.statuses(),
        "diagnostics": plugins_facts,
        "tasks": [
            {
                "owner": t.owner,
                "name": t.name,
                "runs": t.runs,
                "failures": t.failures,
                "last_error": t.last_error,
            }
            for t in services.tasks.status()
        ],
        "connections": [c.as_dict() for c in request.app[CONNECTIONS].status()],
        "event_loop": request.app[LOOP_LAG].summary(),
    }
    text = redactor(json.dumps(bundle, default=str, indent=2))
    return web.Response(
        text=text,
        content_type="application/json",
        headers={"Content-Disposition": 'attachment; filename="medianest-support.json"'},
    )


@hookimpl
def medianest_routes() -> Routes:
    return routes
