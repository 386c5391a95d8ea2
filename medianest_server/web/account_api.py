"""Built-in plugin: signing in from API clients, and each person's own account.

`POST /api/v1/auth/token` and `/api/v1/auth/refresh` for API clients; `/api/v1/me…` for the
signed-in person's profile, password, devices (sessions), API tokens and notifications. Every
id in these routes is checked against the caller: someone else's id answers 404, as if absent.
"""

from __future__ import annotations

from dataclasses import asdict

from aiohttp import web
from aiohttp_session import get_session
from marshmallow import Schema, fields, validate

from ..appkeys import SERVICES
from ..auth import account
from ..auth.external import linked_identities, unlink_identity
from ..auth.middleware import AUTH
from ..auth.services import AUTH_SERVICES, AuthServices
from ..auth.users import user_dict
from ..errors import InvalidInput, NotFound, Unauthorized
from ..hookspecs import hookimpl
from ..routing import Routes
from .access import USER
from .api_schemas import (
    ApiTokenList,
    CreatedApiToken,
    DeviceList,
    IdentityList,
    MarkedAllRead,
    MarkedRead,
    Me,
    NotificationPage,
    PasswordChanged,
    Revoked,
    SignedOut,
    TokenPair,
    Unlinked,
)
from .validation import load_json, load_query, path_id

routes = Routes()

_TEXT = validate.Length(min=1, max=1024)


class Credentials(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=_TEXT)


class RefreshRequest(Schema):
    refresh_token = fields.String(required=True, validate=validate.Length(min=1, max=512))


class PasswordChange(Schema):
    current_password = fields.String(required=True, validate=_TEXT)
    new_password = fields.String(required=True, validate=_TEXT)


class TokenRequest(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))


class Paging(Schema):
    page = fields.Integer(load_default=1, validate=validate.Range(min=1, max=100_000))
    per_page = fields.Integer(load_default=25, validate=validate.Range(min=1, max=200))
    unread = fields.Boolean(load_default=False)


def _auth(request: web.Request) -> AuthServices:
    return request.app[AUTH_SERVICES]


async def sign_in_checked(request: web.Request, username: str, password: str) -> object:
    """Check the sign-in limits, then the password; record the outcome either way."""
    auth = _auth(request)
    try:
        async with auth.login_limits.attempt(
            username, request.remote, counts=lambda exc: isinstance(exc, Unauthorized)
        ):
            user = await auth.users.authenticate(username, password)
    except Unauthorized:
        await auth.audit.record("auth.login.failed", actor_name=username[:64], ip=request.remote)
        raise
    await auth.users.record_login(user.id)
    await auth.audit.record("auth.login.succeeded", actor=user, ip=request.remote)
    return user


@routes.post(
    "/api/v1/auth/token",
    access="public",
    body=Credentials,
    response=TokenPair,
    errors=(401, 429),
)
async def issue_token(request: web.Request) -> web.Response:
    """Trade a username and password for an access token (15 min) and a refresh token."""
    body = await load_json(request, Credentials())
    auth = _auth(request)
    user = await sign_in_checked(request, body["username"], body["password"])
    _, info = await auth.sessions.create(
        user.id,  # type: ignore[attr-defined]
        kind="api",
        ip=request.remote,
        user_agent=request.headers.get("User-Agent"),
    )
    refresh = await auth.sessions.issue_refresh_token(info.id)
    access, expires_in = auth.access_tokens.issue(user, info.id)  # type: ignore[arg-type]
    return web.json_response(
        {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }
    )


@routes.post(
    "/api/v1/auth/refresh",
    access="public",
    body=RefreshRequest,
    response=TokenPair,
    errors=(401,),
)
async def refresh_token(request: web.Request) -> web.Response:
    """A new access token and a new refresh token; the old refresh token stops working."""
    body = await load_json(request, RefreshRequest())
    auth = _auth(request)
    info, user, refresh = await auth.sessions.rotate_refresh_token(body["refresh_token"])
    access, expires_in = auth.access_tokens.issue(user, info.id)
    return web.json_response(
        {
            "access_token": access,
            "refresh_token": refresh,
            "token_type": "Bearer",
            "expires_in": expires_in,
        }
    )


@routes.post("/api/v1/auth/logout", access="user", response=SignedOut, errors=(400,))
async def logout(request: web.Request) -> web.Response:
    """End the caller's session (browser or API client)."""
    auth = _auth(request)
    info = request[AUTH]
    if info.method == "cookie":
        (await get_session(request)).invalidate()
    elif info.session_id:
        await auth.sessions.revoke(info.session_id)
    else:
        raise InvalidInput("an API token has no session to end; revoke the token instead")
    await auth.audit.record("auth.logout", actor=request[USER], ip=request.remote)
    return web.json_response({"signed_out": True})


@routes.get("/api/v1/me", access="user", response=Me)
async def me(request: web.Request) -> web.Response:
    """The signed-in person."""
    body = user_dict(request[USER])
    body["auth"] = request[AUTH].method
    session_id = request[AUTH].session_id
    if request[AUTH].method == "cookie" and session_id:
        body["csrf_token"] = _auth(request).csrf.for_session(session_id)
    return web.json_response(body)


@routes.post("/api/v1/me/password", access="user", body=PasswordChange, response=PasswordChanged)
async def change_password(request: web.Request) -> web.Response:
    """Change the password (the current one is required); every other session is signed out."""
    body = await load_json(request, PasswordChange())
    ended = await account.change_password(
        _auth(request),
        request[USER],
        body["current_password"],
        body["new_password"],
        keep_session=request[AUTH].session_id,
        ip=request.remote,
    )
    return web.json_response({"changed": True, "other_sessions_ended": ended})


@routes.get("/api/v1/me/sessions", access="user", response=DeviceList)
async def my_sessions(request: web.Request) -> web.Response:
    """The caller's devices: created, last seen, address, browser."""
    sessions = await _auth(request).sessions.list_for_user(request[USER].id)
    current = request[AUTH].session_id
    return web.json_response({"sessions": [s.as_dict(current_id=current) for s in sessions]})


@routes.delete("/api/v1/me/sessions/{session_id}", access="user", response=Revoked)
async def revoke_my_session(request: web.Request) -> web.Response:
    """Sign one of your devices out (someone else's id answers 404)."""
    session_id = request.match_info["session_id"]
    if not await account.revoke_session(_auth(request), request[USER], session_id, request.remote):
        raise NotFound("no such session")
    return web.json_response({"revoked": True})


@routes.get("/api/v1/me/tokens", access="user", response=ApiTokenList)
async def my_tokens(request: web.Request) -> web.Response:
    """Your personal API tokens (never the tokens themselves)."""
    tokens = await _auth(request).api_tokens.list_for_user(request[USER].id)
    return web.json_response({"tokens": [t.as_dict() for t in tokens]})


@routes.post(
    "/api/v1/me/tokens",
    access="user",
    body=TokenRequest,
    response=CreatedApiToken,
    status=201,
)
async def create_token(request: web.Request) -> web.Response:
    """A new personal API token; `token` is in this answer only, never shown again."""
    body = await load_json(request, TokenRequest())
    raw, info = await account.create_token(
        _auth(request), request[USER], body["name"], request.remote
    )
    return web.json_response({**info.as_dict(), "token": raw}, status=201)


@routes.get("/api/v1/me/identities", access="user", response=IdentityList)
async def identities(request: web.Request) -> web.Response:
    """Your linked sign-in accounts (Plex and others), never their secrets."""
    linked = await linked_identities(_auth(request), request[USER].id)
    return web.json_response({"identities": [asdict(i) for i in linked]})


@routes.delete(
    "/api/v1/me/identities/{identity_id:[0-9]+}",
    access="user",
    response=Unlinked,
    errors=(409,),
)
async def unlink_identity_route(request: web.Request) -> web.Response:
    """Unlink a sign-in account; 409 while it is your only way to sign in."""
    await unlink_identity(
        _auth(request), request[USER], path_id(request, "identity_id"), ip=request.remote
    )
    return web.json_response({"unlinked": True})


@routes.delete("/api/v1/me/tokens/{token_id:[0-9]+}", access="user", response=Revoked)
async def revoke_token(request: web.Request) -> web.Response:
    """Revoke one of your API tokens; it stops working at once."""
    token_id = path_id(request, "token_id")
    if not await account.revoke_token(_auth(request), request[USER], token_id, request.remote):
        raise NotFound("no such token")
    return web.json_response({"revoked": True})


@routes.get("/api/v1/notifications", access="user", query=Paging, response=NotificationPage)
async def my_notifications(request: web.Request) -> web.Response:
    """Your notifications, newest first, with the unread count."""
    query = load_query(request, Paging())
    items, total, unread = await request.app[SERVICES].notifications.list(
        request[USER].id,
        unread_only=query["unread"],
        page=query["page"],
        per_page=query["per_page"],
    )
    return web.json_response({"notifications": items, "total": total, "unread": unread})


@routes.post(
    "/api/v1/notifications/{notification_id:[0-9]+}/read", access="user", response=MarkedRead
)
async def mark_read(request: web.Request) -> web.Response:
    """Mark one of your notifications read."""
    changed = await request.app[SERVICES].notifications.mark_read(
        request[USER].id, path_id(request, "notification_id")
    )
    if not changed:
        raise NotFound("no such notification")
    return web.json_response({"read": True})


@routes.post("/api/v1/notifications/read-all", access="user", response=MarkedAllRead)
async def mark_all_read(request: web.Request) -> web.Response:
    """Mark all your notifications read."""
    count = await request.app[SERVICES].notifications.mark_read(request[USER].id, None)
    return web.json_response({"read": count})


@hookimpl
def medianest_routes() -> Routes:
    return routes
