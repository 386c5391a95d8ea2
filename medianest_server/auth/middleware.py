"""Who is calling: bearer tokens (personal API token or JWT) or the browser session cookie.

Sets `request[USER]` (read by the access check) and `request[AUTH]` (how they authenticated).
Cookie-authenticated state-changing requests must carry the CSRF token. Signed-in API calls
count against `[auth] api_requests_per_minute` per user, with X-RateLimit-* headers.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Literal

from aiohttp import web
from aiohttp.typedefs import Handler
from aiohttp_session import get_session

from ..errors import RateLimited, Unauthorized
from ..ratelimit import RateLimitResult
from ..web.access import AUTH_ERROR, USER
from .csrf import SAFE_METHODS, submitted_token
from .services import AUTH_SERVICES, AuthServices
from .sessions import SESSION_INFO, SESSION_USER
from .tokens import looks_like_api_token

log = logging.getLogger("medianest.auth")

AuthMethod = Literal["cookie", "api_token", "jwt"]


@dataclass(frozen=True)
class AuthInfo:
    method: AuthMethod
    session_id: str | None = None
    token_id: int | None = None


AUTH = web.RequestKey("auth", AuthInfo)
RATE_LIMIT = web.RequestKey("rate_limit", RateLimitResult)


@web.middleware
async def authentication_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    auth = request.app[AUTH_SERVICES]
    header = request.headers.get("Authorization", "")
    if header:
        try:
            await _from_bearer(request, auth, header)
        except Unauthorized as exc:
            # decided by the access check: a public route (a webhook whose sender puts its
            # secret in Authorization) still answers; a protected one says why it refused
            request[AUTH_ERROR] = exc.message
    elif auth.session_cookie_present(request):
        await get_session(request)  # loads, validates and refreshes the browser session
        user, info = request.get(SESSION_USER), request.get(SESSION_INFO)
        if user is not None and info is not None:
            request[USER] = user
            request[AUTH] = AuthInfo("cookie", session_id=info.id)
            if request.method not in SAFE_METHODS:
                given = await submitted_token(request)
                if not given or not auth.csrf_ok_for_session(info.id, given):
                    log.warning("CSRF token missing or wrong", extra={"path": request.path})
                    raise web.HTTPForbidden(
                        text="The form expired or came from another site (CSRF check failed);"
                        " reload the page and try again."
                    )
    user = request.get(USER)
    limit = auth.api_requests_per_minute
    if user is not None and limit > 0 and request.path.startswith("/api/"):
        result = await auth.limiter.hit(f"api:user:{user.id}", limit=limit, window_seconds=60)
        if not result.allowed:
            raise RateLimited(
                "too many requests; slow down",
                retry_after=result.retry_after,
                headers=result.headers(),
            )
        request[RATE_LIMIT] = result
    response = await handler(request)
    if RATE_LIMIT in request:
        response.headers.update(request[RATE_LIMIT].headers())
    return response


async def _from_bearer(request: web.Request, auth: AuthServices, header: str) -> None:
    scheme, _, credential = header.partition(" ")
    credential = credential.strip()
    if scheme.lower() != "bearer" or not credential:
        raise Unauthorized("use 'Authorization: Bearer <token>'")
    if looks_like_api_token(credential):
        resolved = await auth.api_tokens.resolve(credential)
        if resolved is None:
            raise Unauthorized("this API token is not valid (revoked, expired or unknown)")
        token, user = resolved
        request[USER] = user
        request[AUTH] = AuthInfo("api_token", token_id=token.id)
        return
    claims = auth.access_tokens.verify(credential)
    session = await auth.sessions.resolve(str(claims["sid"]))
    if session is None or str(session[1].id) != str(claims["sub"]):
        raise Unauthorized("this session has ended; sign in again")
    request[USER] = session[1]
    request[AUTH] = AuthInfo("jwt", session_id=session[0].id)
