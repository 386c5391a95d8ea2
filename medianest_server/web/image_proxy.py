"""Built-in plugin: `/images/proxy`, images from the hosts plugins declare, for signed-in people.

A plugin declares its hosts with `medianest_image_hosts` and puts `ctx.image_url(address)` on its
pages. The page security policy stays `img-src 'self' data:`: browsers load these images from
MediaNest, which fetched them once (shared HttpClient: timeouts, a circuit breaker per host)
and keeps them in `<data_dir>/image_cache` under the `[images]` bound.
"""

from __future__ import annotations

import logging

from aiohttp import web

from ..appkeys import CONFIG, PLUGINS, SERVICES
from ..errors import InvalidInput, NotFound, UpstreamUnavailable
from ..hookspecs import hookimpl
from ..images.disk_cache import ImageDiskCache
from ..images.fetch import Image, ImageHosts, fetch_image, not_declared
from ..images.signing import KEY_PURPOSE, PROXY_PATH, verify
from ..routing import Routes
from .access import current_user

log = logging.getLogger("medianest.images")

CACHE_FOLDER = "image_cache"
BROWSER_CACHE = "private, max-age=2592000"  # a month: the address names one image for good
HOSTS_BUDGET_SECONDS = 2.0
HOOK = "medianest_image_hosts"

routes = Routes()


@routes.page(PROXY_PATH, access="user")
async def image_proxy(request: web.Request) -> web.StreamResponse:
    """An image a plugin put on a page, fetched from its declared host or the disk cache."""
    assert current_user(request) is not None  # access="user": the core checked
    plugin = request.query.get("plugin", "")
    url = request.query.get("url", "")
    sig = request.query.get("sig", "")
    if not (plugin and url and sig):
        raise InvalidInput(
            "This image address is incomplete: it needs plugin, url and sig.",
            details={k: "missing" for k in ("plugin", "url", "sig") if not request.query.get(k)},
        )
    key = request.app[SERVICES].secrets.derive_key(KEY_PURPOSE)
    if not verify(key, plugin, url, sig):
        raise web.HTTPForbidden(
            text="This image address was not made by MediaNest (its signature does not match)."
        )
    hosts = await _declared_hosts(request.app, plugin)
    if not hosts.allows(url):
        raise not_declared(hosts, url)
    cache = _cache(request.app)
    image = await cache.get(url)
    if image is None:
        config = request.app[CONFIG].images
        http = request.app[SERVICES].http
        image = await fetch_image(http, url, hosts, max_bytes=config.max_image_bytes)
        await cache.put(url, image)
    return _answer(image)


def _answer(image: Image) -> web.Response:
    return web.Response(
        body=image.body,
        headers={"Content-Type": image.content_type, "Cache-Control": BROWSER_CACHE},
    )


def _cache(app: web.Application) -> ImageDiskCache:
    """The cache holds no state but its folder: every request may make its own."""
    config = app[CONFIG]
    return ImageDiskCache(config.data_dir / CACHE_FOLDER, config.images.cache_max_bytes)


async def _declared_hosts(app: web.Application, plugin: str) -> ImageHosts:
    """The hosts `plugin` declares now (its settings may have changed since the page)."""
    manager = app[PLUGINS]
    record = manager.records.get(plugin)
    if record is None or record.builtin or not record.usable:
        raise NotFound(f"No plugin named {plugin!r} is running, so its images are not shown.")
    try:
        declared = await manager.call(record, HOOK, budget=HOSTS_BUDGET_SECONDS)
        return ImageHosts.parse(plugin, declared or ())
    except Exception as exc:
        log.warning(
            "plugin hook failed: %s: %s",
            type(exc).__name__,
            exc,
            extra={"plugin": plugin, "hook": HOOK},
        )
        raise UpstreamUnavailable(
            f"The {record.title} plugin could not say which image hosts it uses."
        ) from None


@hookimpl
def medianest_routes() -> Routes:
    return routes
