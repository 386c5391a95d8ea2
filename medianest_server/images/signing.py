"""Signed proxy URLs: the proxy fetches only addresses MediaNest itself put on its pages.

The signature binds the plugin and the image's address together with a key derived from the
server's secret key, so a person cannot point the proxy at an address of their choosing, and
a plugin's signature is not good for another plugin's hosts.
"""

from __future__ import annotations

import hashlib
import hmac
from urllib.parse import urlencode, urlsplit

PROXY_PATH = "/images/proxy"
KEY_PURPOSE = "medianest image proxy v1"
SCHEMES = ("http", "https")


def check_image_address(url: str) -> str:
    """`url` itself if it is an absolute http(s) address with a host; ValueError otherwise."""
    try:
        parts = urlsplit(url)
        host = parts.hostname
    except ValueError:
        raise ValueError(f"not an image address: {url!r}") from None
    if parts.scheme not in SCHEMES or not host:
        raise ValueError(f"an image address must be an absolute http(s) URL, not {url!r}")
    return url


def _signature(key: bytes, plugin: str, url: str) -> str:
    message = f"{plugin}\n{url}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()[:32]


def proxy_url(key: bytes, plugin: str, url: str) -> str:
    """The `/images/proxy?...` URL of `url` on behalf of `plugin`."""
    check_image_address(url)
    query = urlencode({"plugin": plugin, "url": url, "sig": _signature(key, plugin, url)})
    return f"{PROXY_PATH}?{query}"


def verify(key: bytes, plugin: str, url: str, sig: str) -> bool:
    """Was this proxy URL made by this server for this plugin?"""
    return hmac.compare_digest(_signature(key, plugin, url), sig)
