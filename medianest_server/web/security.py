"""Security headers on every response, and forwarded headers believed only from trusted proxies."""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

from ..logs import LOG_FIELDS

CONTENT_SECURITY_POLICY = (
    "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'self'; "
    "form-action 'self'; frame-ancestors 'none'"
)
HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cross-Origin-Opener-Policy": "same-origin",
}
# the one header a page may choose for itself: a page that opens a popup to another site (sign
# in with Plex) and must keep a handle on it asks for "same-origin-allow-popups"
OPENER_POLICIES = frozenset({"same-origin", "same-origin-allow-popups"})


def security_headers(*, https: bool) -> Middleware:
    headers = dict(HEADERS)
    if https:
        headers["Strict-Transport-Security"] = "max-age=31536000"

    @web.middleware
    async def add_headers(request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await handler(request)
        except web.HTTPException as exc:  # redirects travel as exceptions
            exc.headers.update(headers)
            raise
        if not response.prepared:  # streams (SSE, WebSocket) set theirs before preparing
            chosen = response.headers.get("Cross-Origin-Opener-Policy")
            response.headers.update(headers)
            if chosen in OPENER_POLICIES:
                response.headers["Cross-Origin-Opener-Policy"] = chosen
            if "Cache-Control" not in response.headers and not _cacheable(request):
                # pages carry a CSRF token and a person's data, JSON answers tokens and
                # secrets: never kept by a browser, a proxy or the back button's cache
                response.headers["Cache-Control"] = "no-store"
        return response

    return add_headers


def _cacheable(request: web.Request) -> bool:
    """Static files (versioned URLs) may be cached; everything else is answered no-store
    unless its handler chose otherwise (the Plex image proxy: private, a month)."""
    return request.path.startswith("/static/") or request.path == "/favicon.ico"


def forwarded_headers(trusted: Iterable[str]) -> Middleware:
    """Use X-Forwarded-For/-Proto only when the direct peer is one of `trusted`."""
    networks = [ipaddress.ip_network(n, strict=False) for n in trusted]

    def is_trusted(address: str | None) -> bool:
        if not address:
            return False
        try:
            ip = ipaddress.ip_address(address)
        except ValueError:
            return False
        return any(ip in network for network in networks)

    @web.middleware
    async def believe_proxies(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not networks or not is_trusted(request.remote):
            return await handler(request)
        changes: dict[str, str] = {}
        forwarded_for = request.headers.get("X-Forwarded-For")
        if forwarded_for:
            # walk from the nearest hop back; the first address not a trusted proxy is the client
            hops = [h.strip() for h in forwarded_for.split(",") if h.strip()]
            client = next((h for h in reversed(hops) if not is_trusted(h)), hops[0])
            changes["remote"] = client
            fields = request.get(LOG_FIELDS)
            if fields is not None:  # the access line names the client, not the proxy
                fields["remote"] = client
        proto = request.headers.get("X-Forwarded-Proto", "").split(",")[0].strip().lower()
        if proto in ("http", "https"):
            changes["scheme"] = proto
        return await handler(request.clone(**changes) if changes else request)  # type: ignore[arg-type]

    return believe_proxies
