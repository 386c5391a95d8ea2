"""Built-in plugin: the profile page: theme, password, devices, API tokens. Works without JS."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..auth import account
from ..auth.middleware import AUTH
from ..auth.services import AUTH_SERVICES, AuthServices
from ..errors import MediaNestError
from ..hookspecs import hookimpl
from ..routing import Routes
from .access import USER
from .devices import describe_device
from .layout import THEMES
from .templating import render_page
from .validation import load_form, path_id

routes = Routes()
CSRF = ("csrf_token",)


class ThemeForm(Schema):
    theme = fields.String(required=True, validate=validate.OneOf(THEMES))
    # the page to go back to (the theme button in the top bar); only a path on this site
    next = fields.String(
        load_default="/profile", validate=validate.Regexp(r"^/(?![/\\])[^\s]{0,500}$")
    )


class PasswordForm(Schema):
    current_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    new_password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class TokenForm(Schema):
    name = fields.String(required=True, validate=validate.Length(min=1, max=100))


def _auth(request: web.Request) -> AuthServices:
    return request.app[AUTH_SERVICES]


async def _render(request: web.Request, status: int = 200, **extra: Any) -> web.Response:
    auth, user = _auth(request), request[USER]
    current = request[AUTH].session_id
    context = {
        "sessions": [
            {**s.as_dict(current_id=current), "device": describe_device(s.user_agent)}
            for s in await auth.sessions.list_for_user(user.id)
        ],
        "tokens": [t.as_dict() for t in await auth.api_tokens.list_for_user(user.id)],
        "themes": THEMES,
        "message": None,
        "error": None,
        "new_token": None,
        **extra,
    }
    return await render_page(request, "profile.html", context, status=status)


@routes.page("/profile", access="user", name="profile")
async def profile(request: web.Request) -> web.Response:
    return await _render(request)


@routes.page("/profile/theme", access="user", method="POST")
async def set_theme(request: web.Request) -> web.Response:
    form = await load_form(request, ThemeForm(), ignore=CSRF)
    await _auth(request).preferences.update(request[USER].id, theme=form["theme"])
    raise web.HTTPSeeOther(form["next"])


@routes.page("/profile/password", access="user", method="POST")
async def change_password(request: web.Request) -> web.Response:
    try:
        form = await load_form(request, PasswordForm(), ignore=CSRF)
        ended = await account.change_password(
            _auth(request),
            request[USER],
            form["current_password"],
            form["new_password"],
            keep_session=request[AUTH].session_id,
            ip=request.remote,
        )
    except MediaNestError as exc:
        return await _render(request, status=exc.status, error=exc.message)
    return await _render(request, message=f"Password changed; {ended} other session(s) signed out.")


@routes.page("/profile/sessions/{session_id}/revoke", access="user", method="POST")
async def revoke_session(request: web.Request) -> web.Response:
    session_id = request.match_info["session_id"]
    if not await account.revoke_session(_auth(request), request[USER], session_id, request.remote):
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther("/profile")


@routes.page("/profile/tokens", access="user", method="POST")
async def create_token(request: web.Request) -> web.Response:
    try:
        form = await load_form(request, TokenForm(), ignore=CSRF)
        raw, info = await account.create_token(
            _auth(request), request[USER], form["name"], request.remote
        )
    except MediaNestError as exc:
        return await _render(request, status=exc.status, error=exc.message)
    # shown in this answer only; it is stored hashed and cannot be shown again
    return await _render(request, new_token={"name": info.name, "token": raw})


@routes.page("/profile/tokens/{token_id:[0-9]+}/revoke", access="user", method="POST")
async def revoke_token(request: web.Request) -> web.Response:
    token_id = path_id(request, "token_id")
    if not await account.revoke_token(_auth(request), request[USER], token_id, request.remote):
        raise web.HTTPNotFound()
    raise web.HTTPSeeOther("/profile")


@hookimpl
def medianest_routes() -> Routes:
    return routes
