"""Signed image URLs: the proxy fetches only paths this plugin put on its own pages."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

PHOTO_URL = "/plex/photo"
MAX_SIDE = 2000


class ImageSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sig(self, path: str, width: int, height: int) -> str:
        message = f"{path}\n{width}\n{height}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def url(self, path: str | None, width: int = 300, height: int = 450) -> str | None:
        """The proxy URL of a Plex image path (an item's `thumb` or `art`), or None."""
        if not path or not is_server_path(path):
            return None
        query = {"path": path, "w": width, "h": height, "sig": self._sig(path, width, height)}
        return f"{PHOTO_URL}?{urlencode(query)}"

    def verify(self, path: str, width: int, height: int, sig: str) -> bool:
        if not is_server_path(path) or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            return False
        return hmac.compare_digest(self._sig(path, width, height), sig)


def is_server_path(path: str) -> bool:
    """A path on the configured server, never a URL of another host."""
    return (
        path.startswith("/")
        and not path.startswith("//")
        and "://" not in path
        and ("\\" not in path)
    )
