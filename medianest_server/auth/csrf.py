"""CSRF tokens for cookie-authenticated requests.

A signed-in browser's token is an HMAC of its session id: it cannot be guessed from outside
and needs no storage. Forms shown before sign-in (setup, sign-in) use a double-submit cookie
with an HMAC of its value. Requests authenticated by a bearer token need no CSRF token: a
browser never attaches those on its own.
"""

from __future__ import annotations

import hmac
import secrets

from aiohttp import web

from ..secretbox import SecretBox

CSRF_HEADER = "X-CSRF-Token"
CSRF_FIELD = "csrf_token"
PRE_SESSION_COOKIE = "medianest_pre"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


class CsrfTokens:
    def __init__(self, box: SecretBox) -> None:
        self._key = box.derive_key("csrf v1")

    def for_session(self, session_id: str) -> str:
        return hmac.new(self._key, b"session:" + session_id.encode(), "sha256").hexdigest()

    def for_visitor(self, cookie_value: str) -> str:
        return hmac.new(self._key, b"visitor:" + cookie_value.encode(), "sha256").hexdigest()

    def visitor_token(self, request: web.Request, response_cookies: dict[str, str]) -> str:
        """The token for an anonymous form; sets the double-submit cookie when missing."""
        value = request.cookies.get(PRE_SESSION_COOKIE) or ""
        if len(value) < 20:
            value = secrets.token_urlsafe(24)
            response_cookies[PRE_SESSION_COOKIE] = value
        return self.for_visitor(value)

    def check_visitor(self, request: web.Request, given: str) -> bool:
        value = request.cookies.get(PRE_SESSION_COOKIE) or ""
        return bool(value and given) and hmac.compare_digest(self.for_visitor(value), given)


async def submitted_token(request: web.Request) -> str:
    """The token from the header, or from the form field of a form post."""
    header = request.headers.get(CSRF_HEADER)
    if header:
        return header
    if request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        form = await request.post()
        value = form.get(CSRF_FIELD)
        return value if isinstance(value, str) else ""
    return ""
