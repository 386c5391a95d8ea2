"""Built-in plugin: the first-run setup page, sign-in and sign-out. They work without JavaScript."""

from __future__ import annotations

import logging
from typing import Any

from aiohttp import web
from aiohttp_session import get_session, new_session
from marshmallow import Schema, fields, validate

from ..appkeys import PLUGINS
from ..auth.csrf import CSRF_FIELD, PRE_SESSION_COOKIE
from ..auth.external import identity_secret, link_identity, linked_identity, user_for_identity
from ..auth.limits import LoginLimits
from ..auth.models import User
from ..auth.services import AUTH_SERVICES, AuthServices
from ..auth.sessions import SESSION_INFO
from ..errors import InvalidInput, MediaNestError, RateLimited, Unauthorized
from ..hookspecs import hookimpl
from ..plugins.types import ExternalIdentity, LinkedIdentity, LoginProvider
from ..routing import Routes
from .access import USER, current_user
from .templating import render_page
from .validation import load_form

log = logging.getLogger("medianest.auth")
routes = Routes()
PROVIDERS_BUDGET_SECONDS = 0.5


class SetupForm(Schema):
    code = fields.String(required=True, validate=validate.Length(min=1, max=64))
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))


class LoginForm(Schema):
    username = fields.String(required=True, validate=validate.Length(min=1, max=64))
    password = fields.String(required=True, validate=validate.Length(min=1, max=1024))
    next = fields.String(load_default="/", validate=validate.Length(max=2000))


def _auth(request: web.Request) -> AuthServices:
    return request.app[AUTH_SERVICES]


def safe_next(target: str | None) -> str:
    """Only a path on this site: never `//evil.example` or `https://…` (open redirect).

    Browsers drop tabs and newlines from URLs, so "/<tab>/evil" would become "//evil": any
    control character, a backslash or a leading `//` sends the person home instead.
    """
    if (
        not target
        or not target.startswith("/")
        or target.startswith("//")
        or "\\" in target
        or any(ord(c) < 32 or ord(c) == 127 for c in target)
    ):
        return "/"
    return target


async def _render(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    cookies: dict[str, str] = {}
    context = {**context, "csrf_token": _auth(request).csrf.visitor_token(request, cookies)}
    response = await render_page(request, template, context, status=status)
    for name, value in cookies.items():
        response.set_cookie(
            name,
            value,
            httponly=True,
            samesite="Lax",
            secure=_auth(request).secure_cookies,
            path="/",
        )
    return response


async def _check_form_csrf(request: web.Request) -> None:
    form = await request.post()
    given = form.get(CSRF_FIELD)
    if not isinstance(given, str) or not _auth(request).csrf.check_visitor(request, given):
        raise web.HTTPForbidden(
            text="The form expired or came from another site; reload the page and try again."
        )


async def start_browser_session(request: web.Request, user: User) -> None:
    """Sign the browser in with a brand-new session id (any earlier one is ended)."""
    await get_session(request)  # loads the earlier session, if the browser had one
    earlier = request.get(SESSION_INFO)
    if earlier is not None:
        await _auth(request).sessions.revoke(earlier.id)
    session = await new_session(request)
    session["user_id"] = user.id


@routes.page("/setup", access="public", name="setup")
async def setup_page(request: web.Request) -> web.Response:
    if await _auth(request).setup.code() is None:
        raise web.HTTPNotFound()
    return await _with_providers(request, "setup.html", {"error": None, "form": {}})


async def _with_providers(
    request: web.Request, template: str, context: dict[str, Any], *, status: int = 200
) -> web.Response:
    """A page listing the login providers (sign-in, setup)."""
    providers = await login_providers(request)
    response = await _render(request, template, {**context, "providers": providers}, status=status)
    # a provider's popup stays ours to close once it is done (see LoginProvider.popup)
    response.headers["Cross-Origin-Opener-Policy"] = "same-origin-allow-popups"
    return response


@routes.page("/setup", access="public", method="POST")
async def setup_submit(request: web.Request) -> web.StreamResponse:
    auth = _auth(request)
    if await auth.setup.code() is None:
        raise web.HTTPNotFound()
    await _check_form_csrf(request)
    # per address only: a global limit would let a stranger lock the owner out, and the
    # 80-bit code needs no account limit
    limits = LoginLimits(auth.limiter, scope="setup")
    form: dict[str, Any] = {}

    def wrong_code(exc: Exception) -> bool:  # only wrong codes count
        return isinstance(exc, InvalidInput) and "code" in (exc.details or {})

    try:
        form = await load_form(request, SetupForm(), ignore=(CSRF_FIELD,))
        async with limits.attempt("", request.remote, counts=wrong_code):
            user = await auth.setup.complete(form["code"], form["username"], form["password"])
    except RateLimited as exc:
        context = {"error": exc.message, "form": form}
        page = await _with_providers(request, "setup.html", context, status=429)
        return _with_headers(page, exc.headers)
    except MediaNestError as exc:
        context = {"error": exc.message, "form": form}
        return await _with_providers(request, "setup.html", context, status=exc.status)
    await auth.audit.record("auth.setup.completed", actor=user, ip=request.remote)
    log.info("setup complete: first admin created", extra={"username": user.username})
    await auth.users.record_login(user.id)  # set-up signs the new admin in
    await start_browser_session(request, user)
    raise web.HTTPSeeOther("/")


async def login_providers(request: web.Request) -> list[LoginProvider]:
    outcomes = await request.app[PLUGINS].call_each(
        "medianest_login_providers", budget=PROVIDERS_BUDGET_SECONDS
    )
    return [p for o in outcomes if o.result for p in o.result if isinstance(p, LoginProvider)]


@routes.page("/login", access="public", name="login")
async def login_page(request: web.Request) -> web.Response:
    auth = _auth(request)
    if await auth.users.count() == 0 and await auth.setup.code() is not None:
        raise web.HTTPSeeOther("/setup")  # nobody to sign in as yet
    if request.get(USER) is not None:
        raise web.HTTPSeeOther(safe_next(request.query.get("next")))
    return await _with_providers(
        request,
        "login.html",
        {"error": None, "username": "", "next": safe_next(request.query.get("next"))},
    )


@routes.page("/login", access="public", method="POST")
async def login_submit(request: web.Request) -> web.StreamResponse:
    await _check_form_csrf(request)
    from .account_api import sign_in_checked

    form: dict[str, Any] = {"username": "", "next": "/"}
    try:
        form = await load_form(request, LoginForm(), ignore=(CSRF_FIELD,))
        user = await sign_in_checked(request, form["username"], form["password"])
    except (MediaNestError, Unauthorized) as exc:
        context = {
            "error": exc.message,
            "username": form.get("username", ""),
            "next": safe_next(form.get("next")),
        }
        response = await _with_providers(request, "login.html", context, status=exc.status)
        return _with_headers(response, getattr(exc, "headers", None))
    assert isinstance(user, User)
    await start_browser_session(request, user)
    response = web.HTTPSeeOther(safe_next(form["next"]))
    response.del_cookie(PRE_SESSION_COOKIE, path="/")
    raise response


@routes.page("/logout", access="user", method="POST")
async def logout_submit(request: web.Request) -> web.StreamResponse:
    (await get_session(request)).invalidate()
    await _auth(request).audit.record("auth.logout", actor=request[USER], ip=request.remote)
    raise web.HTTPSeeOther("/login")


def _with_headers(response: web.Response, headers: dict[str, str] | None) -> web.Response:
    if headers:
        response.headers.update(headers)
    return response


@hookimpl
def medianest_routes() -> Routes:
    return routes


LINKED = web.RequestKey("identity_linked", str)  # the provider a sign-in flow linked instead


class BrowserAccounts:
    """`ctx.complete_login`, `ctx.user_secret` and `ctx.user` for plugins."""

    def __init__(self, auth: AuthServices) -> None:
        self.auth = auth

    async def sign_in(self, request: web.Request, identity: ExternalIdentity) -> User:
        signed_in = current_user(request)
        if signed_in is not None:
            mine = await linked_identity(self.auth, signed_in.id, identity.provider)
            if mine is None or mine.subject == identity.subject:
                # a provider's flow run while signed in (the profile's "Link"): link, stay
                await link_identity(self.auth, signed_in, identity, ip=request.remote)
                request[LINKED] = identity.provider
                return signed_in
            # they have another account there: this is a sign-in as that one (switching)
        user = await user_for_identity(self.auth, identity, ip=request.remote)
        await start_browser_session(request, user)
        return user

    def return_url(self, request: web.Request) -> str:
        return "/profile" if LINKED in request else "/"

    async def identity(self, user_id: int, provider: str) -> LinkedIdentity | None:
        return await linked_identity(self.auth, user_id, provider)

    async def secret(self, user_id: int, provider: str) -> str | None:
        return await identity_secret(self.auth, user_id, provider)

    async def user(self, user_id: int) -> User | None:
        return await self.auth.users.get(user_id)
