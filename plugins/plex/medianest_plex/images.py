"""Signed image URLs: the proxy fetches only paths this plugin put on a person's own pages.

The signature binds the path and size to the person it was made for: a URL copied from the
owner's pages is refused for a friend, and the proxy fetches with the viewer's own token, so
Plex itself decides what they may see."""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode

PHOTO_URL = "/plex/photo"
MAX_SIDE = 2000


class ImageSigner:
    def __init__(self, key: bytes) -> None:
        self._key = key

    def _sig(self, user_id: int, path: str, width: int, height: int) -> str:
        message = f"{user_id}\n{path}\n{width}\n{height}".encode()
        return hmac.new(self._key, message, hashlib.sha256).hexdigest()[:32]

    def url(
        self, user_id: int, path: str | None, width: int = 300, height: int = 450
    ) -> str | None:
        """The proxy URL of a Plex image path (an item's `thumb` or `art`) for this user only,
        or None."""
        if not path or not is_server_path(path):
            return None
        sig = self._sig(user_id, path, width, height)
        return f"{PHOTO_URL}?{urlencode({'path': path, 'w': width, 'h': height, 'sig': sig})}"

    def verify(self, user_id: int, path: str, width: int, height: int, sig: str) -> bool:
        """Was this URL made for `user_id`?"""
        if not is_server_path(path) or not (0 < width <= MAX_SIDE and 0 < height <= MAX_SIDE):
            return False
        return hmac.compare_digest(self._sig(user_id, path, width, height), sig)


def is_server_path(path: str) -> bool:
    """A path on the configured server, never a URL of another host."""
    return (
        path.startswith("/")
        and not path.startswith("//")
        and "://" not in path
        and ("\\" not in path)
    )
