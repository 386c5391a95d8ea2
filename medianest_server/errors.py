"""Errors that services raise; one middleware maps them to HTTP (see web/middlewares.py).

Services never raise aiohttp exceptions: they raise one of these, with a stable `code` that
API clients can branch on and a message a person can read.
"""

from __future__ import annotations

from typing import Any


class MediaNestError(Exception):
    """Base of the errors that reach clients: `{"error": {"code", "message", "details"}}`."""

    status = 500
    code = "internal_error"

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class InvalidInput(MediaNestError):
    """The request is malformed; `details` maps each field to what is wrong with it."""

    status = 400
    code = "invalid_input"


class NotFound(MediaNestError):
    status = 404
    code = "not_found"


class Conflict(MediaNestError):
    status = 409
    code = "conflict"


class UpstreamUnavailable(MediaNestError):
    """A service MediaNest depends on (Plex, Overseerr, …) cannot be reached or failed."""

    status = 503
    code = "upstream_unavailable"


class NotConfigured(MediaNestError):
    """A plugin's feature is used before an admin has connected it (its setup settings)."""

    status = 503
    code = "not_configured"


class Unauthorized(MediaNestError):
    """Not signed in, or the credentials are wrong."""

    status = 401
    code = "unauthorized"


class Forbidden(MediaNestError):
    status = 403
    code = "forbidden"


class RateLimited(MediaNestError):
    """Too many attempts; `retry_after` seconds until the next one may succeed."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, *, retry_after: float, headers: dict[str, str]) -> None:
        super().__init__(message, details={"retry_after_seconds": int(retry_after + 0.999)})
        self.retry_after = retry_after
        self.headers = headers
