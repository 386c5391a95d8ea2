"""Request id and error middlewares: every response carries `X-Request-ID`, every error one shape.

API paths (`/api/…`, `/health/…`) answer errors as
`{"error": {"code", "message", "details", "request_id"}}`; pages answer with the styled error page.
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any

import aiohttp_jinja2
from aiohttp import web
from aiohttp.typedefs import Handler

from ..errors import MediaNestError
from ..logs import REQUEST_ID, request_id_var

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
        code = _HTTP_CODES.get(exc.status, "http_error")
        message = exc.text if exc.text and not exc.text.startswith(f"{exc.status}:") else exc.reason
        return error_response(request, exc.status, code, message, headers=exc.headers)
    except MediaNestError as exc:
        if exc.status >= 500:
            log.warning("request failed: %s", exc.message, extra={"code": exc.code})
        return error_response(
            request,
            exc.status,
            exc.code,
            exc.message,
            exc.details,
            headers=getattr(exc, "headers", None),
        )
    except Exception:
        log.exception("unhandled error", extra={"path": request.path})
        return error_response(request, 500, "internal_error", "Something went wrong on the server.")


def error_response(
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
    from .templating import signed_in_context

    context = {
        **signed_in_context(request),
        "status": status,
        "code": code,
        "message": message,
        "request_id": request_id,
    }
    response = aiohttp_jinja2.render_template("error.html", request, context, status=status)
    response.headers.update(kept_headers)
    return response
