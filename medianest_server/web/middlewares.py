"""Request id and error middlewares: every response carries `X-Request-ID`, every error one shape.

API paths (`/api/…`, `/health/…`) answer errors as
`{"error": {"code", "message", "details", "request_id"}}`; pages answer with the error page in the
site's layout (the menu for a signed-in person), in plain words and with a way back.
`/favicon.ico`, which browsers ask for by themselves, answers with the SVG icon.
"""

from __future__ import annotations

import logging
import re
import uuid
from http import HTTPStatus
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler
from yarl import URL

from ..errors import MediaNestError
from ..logs import LOG_FIELDS, REQUEST_ID, request_id_var
from .templating import STATIC_DIR, error_page_context

log = logging.getLogger("medianest.web")

REQUEST_ID_HEADER = "X-Request-ID"
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_JSON_PREFIXES = ("/api/", "/health/")

# HTTP status -> stable error code for errors aiohttp raises itself (404 from the router, 413, …)
_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    413: "request_too_large",
    415: "unsupported_media_type",
    429: "rate_limited",
}


_PAGES_UNDER_API = frozenset({"/api/docs"})

# what a person reads on an error page: a heading, and a sentence when the error's own
# message is aiohttp's reason phrase ("Not Found") rather than something written for people
_PAGE_WORDS = {
    400: ("That did not work", "The request was not understood."),
    401: ("Please sign in", "Sign in to see this page."),
    403: ("You cannot open this page", "Your account is not allowed to see this page."),
    404: (
        "Page not found",
        "There is nothing at this address. The link may be old or mistyped.",
    ),
    405: ("That did not work", "This address does not take that kind of request."),
    413: ("That was too big", "What you sent is larger than this server accepts."),
    429: ("Slow down a little", "Too many attempts in a short time. Wait a minute and try again."),
    500: ("Something went wrong", "Something went wrong on the server."),
    503: ("Not available right now", "This part of MediaNest is not available right now."),
}
FAVICON = STATIC_DIR / "favicon.svg"


def wants_json(request: web.Request) -> bool:
    if request.path in _PAGES_UNDER_API:
        return False
    return request.path.startswith(_JSON_PREFIXES) or request.path == "/api"


@web.middleware
async def request_id_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Take a well-formed `X-Request-ID` from the client or make one; echo it on the response."""
    supplied = request.headers.get(REQUEST_ID_HEADER, "")
    request_id = supplied if _VALID_REQUEST_ID.match(supplied) else uuid.uuid4().hex
    request[REQUEST_ID] = request_id
    request[LOG_FIELDS] = {"request_id": request_id}  # the access line's; clones share it
    token = request_id_var.set(request_id)
    try:
        response = await handler(request)
    except web.HTTPException as exc:
        exc.headers[REQUEST_ID_HEADER] = request_id
        raise
    finally:
        request_id_var.reset(token)
    response.headers[REQUEST_ID_HEADER] = request_id
    return response


@web.middleware
async def error_middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Map every failure to one response shape; log unexpected ones once, with the traceback."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        if exc.status == 404 and request.path == "/favicon.ico":
            return favicon()
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return await error_response(request, exc.status, code, message, headers=exc.headers)
    except MediaNestError as exc:
        if exc.status >= 500:
            log.warning("request failed: %s", exc.message, extra={"code": exc.code})
        return await error_response(
            request,
            exc.status,
            exc.code,
            exc.message,
            exc.details,
            headers=getattr(exc, "headers", None),
        )
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return await error_response(
            request, 500, "internal_error", "Something went wrong on the server."
        )


def favicon() -> web.StreamResponse:
    """What browsers ask `/favicon.ico` for by themselves: the SVG icon (pages link it too)."""
    return web.FileResponse(
        FAVICON,
        headers={"Content-Type": "image/svg+xml", "Cache-Control": "public, max-age=86400"},
    )


async def error_response(
    request: web.Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    *,
    headers: Any = None,
) -> web.StreamResponse:
    request_id = request.get(REQUEST_ID)
    kept_headers = {}
    if headers:
        # keep headers that tell the client what to do next; drop content headers of the original
        for name in (
            "Allow",
            "Retry-After",
            "WWW-Authenticate",
            "X-RateLimit-Limit",
            "X-RateLimit-Remaining",
            "X-RateLimit-Reset",
        ):
            if name in headers:
                kept_headers[name] = headers[name]
    if wants_json(request):
        body = {
            "error": {
                "code": code,
                "message": message,
                "details": details,
                "request_id": request_id,
            }
        }
        return web.json_response(body, status=status, headers=kept_headers)
    heading, plain = _PAGE_WORDS.get(status, ("Something went wrong", message))
    if not message or _is_reason_phrase(status, message):
        message = plain
    context = {
        **await error_page_context(request),
        "status": status,
        "code": code,
        "heading": heading,
        "message": message,
        "request_id": request_id,
        "back_url": _same_site_referer(request),
    }
    response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    response.headers.update(kept_headers)
    return response


def _is_reason_phrase(status: int, message: str) -> bool:
    try:
        return message == HTTPStatus(status).phrase
    except ValueError:
        return False


def _same_site_referer(request: web.Request) -> str | None:
    """The page the person came from, when it is a page of this site (for "Go back")."""
    referer = request.headers.get("Referer", "")
    if not referer:
        return None
    try:
        url = URL(referer)
    except ValueError:
        return None
    if url.host != request.url.host or url.port != request.url.port:
        return None
    back = url.path_qs
    if back == request.path_qs or not back.startswith("/") or back.startswith("//"):
        return None
    return back
