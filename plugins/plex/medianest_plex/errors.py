"""What the Plex clients raise. `message` is a plain sentence for anyone ("Plex is not
answering right now."); `detail` is what an admin needs (the path, the status, the connection
error), shown on the health page and logged. Neither ever holds a token."""

from __future__ import annotations

from medianest_server.plugin_api import MediaNestError, UpstreamUnavailable

PLEX = "Plex"
PLEX_TV = "plex.tv"


class PlexError(MediaNestError):
    """Plex or plex.tv answered something MediaNest cannot use (502)."""

    status = 502
    code = "plex_error"

    def __init__(
        self,
        message: str,
        *,
        upstream: str = PLEX,
        http_status: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, details={"upstream": upstream, "http_status": http_status})
        self.upstream = upstream
        self.http_status = http_status
        self.detail = detail or message


class PlexUnauthorized(PlexError):
    """The token was refused (401): sign the person in with Plex again."""

    status = 401
    code = "plex_unauthorized"


class PlexNotFound(PlexError):
    """No such item, collection or section, or not shared with this token (404)."""

    status = 404
    code = "plex_not_found"


class PinExpired(PlexNotFound):
    """The sign-in PIN expired or is unknown to plex.tv: start again with a new one."""

    code = "plex_pin_expired"


class PlexUnavailable(PlexError, UpstreamUnavailable):
    """Plex or plex.tv cannot be reached, timed out, failed (5xx), or its circuit is open."""

    status = 503
    code = "plex_unavailable"

    def __init__(
        self,
        message: str,
        *,
        upstream: str = PLEX,
        http_status: int | None = None,
        retry_after_seconds: int | None = None,
        detail: str | None = None,
    ) -> None:
        super().__init__(message, upstream=upstream, http_status=http_status, detail=detail)
        self.retry_after_seconds = retry_after_seconds
        if retry_after_seconds is not None:
            self.details["retry_after_seconds"] = retry_after_seconds


def not_answering(upstream: str, detail: str, *, http_status: int | None = None) -> PlexUnavailable:
    """Plex or plex.tv cannot be reached or failed: plain words, the cause in `detail`."""
    return PlexUnavailable(
        f"{upstream} is not answering right now.",
        upstream=upstream,
        http_status=http_status,
        detail=detail,
    )
