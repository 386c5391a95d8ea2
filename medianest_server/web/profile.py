"""Built-in plugin: the profile page: theme, password, devices, API tokens. Works without JS."""

from __future__ import annotations

from typing import Any

from aiohttp import web
from marshmallow import Schema, fields, validate

from ..auth import account
from ..auth.external import linked_identities, unlink_identity
from ..auth.middleware import AUTH
from ..auth.services import AUTH_SERVICES, AuthServices
from ..errors import MediaNestError
from ..hookspecs import hookimpl
from ..routing import Routes
from .access import USER
from .auth_pages import login_providers
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
        **await _accounts(request),
        "themes": THEMES,
        "message": None,
        "error": None,
        "new_token": None,
        **extra,
    }
    return await render_page(request, "profile.html", context, status=status)


async def _accounts(request: web.Request) -> dict[str, Any]:
    """The person's linked sign-in accounts, and the providers they could link."""
    auth, user = _auth(request), request[USER]
    linked = await linked_identities(auth, user.id)
    providers = await login_providers(request)
    titles = {p.id: p.title.removeprefix("Sign in with ") for p in providers}
    taken = {i.provider for i in linked}
    details = await auth.users.details(user.id)
    # the last way to sign in cannot be unlinked: no button that can only answer "no"
    can_unlink = details.has_password or len(linked) > 1
    return {
        "identities": [
            {
                "id": i.id,
                "provider": titles.get(i.provider, i.provider.title()),
                "icon": i.provider,
                "username": i.username or i.subject,
            }
            for i in linked
        ],
        "can_unlink": can_unlink,
        "linkable": [
            {"title": titles[p.id], "url": p.start_url, "icon": p.icon}
            for p in providers
            if p.id not in taken
        ],
    }


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


@routes.page("/profile/identities/{identity_id:[0-9]+}/unlink", access="user", method="POST")
async def unlink(request: web.Request) -> web.Response:
    """Unlink a sign-in account while another way to sign in remains."""
    try:
        gone = await unlink_identity(
            _auth(request), request[USER], path_id(request, "identity_id"), ip=request.remote
        )
    except MediaNestError as exc:
        return await _render(request, status=exc.status, error=exc.message)
    return await _render(request, message=f"Unlinked your {gone.provider} account.")


@hookimpl
def medianest_routes() -> Routes:
    return routes
