"""Inbound webhooks: mounted at /api/v1/webhooks/<plugin>/<name>, secret-checked by the core.

Each webhook gets its own secret, derived from `[server] secret_key` (so it survives restarts
and differs per plugin and hook), unless the plugin has a `webhook_secret` setting and it is
set: then that is the secret of all its webhooks. Senders put it in the path (most services,
such as Plex, can only be given a URL) or in the header the plugin names (Overseerr sends a
fixed `Authorization` value). A wrong or missing secret is 401, logged once, and the plugin's
handler never runs.
"""

from __future__ import annotations

import base64
import hmac
import logging
from urllib.parse import quote

from aiohttp import web

from ..appkeys import PLUGINS, SERVICES
from ..logs import LOG_FIELDS, REDACTED
from ..plugins.types import Webhook
from ..routing import Handler, Routes
from .access import mount_routes

log = logging.getLogger("medianest.webhooks")


def webhook_secret(app: web.Application, plugin: str, name: str) -> str:
    """The secret a webhook accepts: the plugin's `webhook_secret` setting when it has one and
    it is set (operators who keep their config in files choose it; Overseerr sends it as the
    exact `Authorization` header), otherwise one derived from `[server] secret_key`."""
    record = app[PLUGINS].records.get(plugin)
    chosen = record.config.get("webhook_secret") if record is not None else None
    if isinstance(chosen, str) and chosen:
        return chosen
    key = app[SERVICES].secrets.derive_key(f"webhook:{plugin}:{name}", 24)
    return base64.urlsafe_b64encode(key).decode().rstrip("=")


def webhook_path(plugin: str, name: str) -> str:
    return f"/api/v1/webhooks/{plugin}" + (f"/{name}" if name else "")


def mount_webhooks(app: web.Application, plugin: str, hooks: list[Webhook]) -> None:
    routes = Routes()
    for hook in hooks:
        if not isinstance(hook, Webhook):
            raise TypeError(f"medianest_webhooks returned {type(hook).__name__}, not Webhook")
        guarded = _guard(plugin, hook)
        path = webhook_path(plugin, hook.name)
        routes.post(path + "/{secret}", access="public")(guarded)
        if hook.secret_header:
            routes.post(path, access="public")(guarded)
    mount_routes(app, plugin, routes, builtin=True)


def _guard(plugin: str, hook: Webhook) -> Handler:
    async def checked(request: web.Request) -> web.StreamResponse:
        expected = webhook_secret(request.app, plugin, hook.name)
        given = request.match_info.get("secret", "")
        fields = request.get(LOG_FIELDS)
        if given and fields is not None:  # the secret travels in the path: not into the log
            fields["path"] = request.path.replace(given, REDACTED)
        if not given and hook.secret_header:
            given = request.headers.get(hook.secret_header, "")
        if not hmac.compare_digest(given.encode(), expected.encode()):
            log.warning(
                "webhook refused: wrong secret",
                extra={"plugin": plugin, "hook": hook.name, "remote": request.remote},
            )
            raise web.HTTPUnauthorized(text="Wrong or missing webhook secret.")
        return await hook.handler(request)

    return checked


def webhook_urls(app: web.Application, plugin: str) -> list[tuple[str, str]]:
    """(hook name, full URL with its secret) for each of a plugin's webhooks: what an admin
    pastes into the sending service. Shown to admins only."""
    from ..appkeys import CONFIG
    from .access import ROUTE_TABLE

    base = app[CONFIG].server.base_url.rstrip("/")
    prefix = f"/api/v1/webhooks/{plugin}"
    found = []
    for info in app[ROUTE_TABLE].values():
        if info.plugin != plugin or info.method != "POST" or not info.path.endswith("/{secret}"):
            continue
        if not info.path.startswith(prefix):
            continue
        name = info.path[len(prefix) :].removesuffix("/{secret}").strip("/")
        secret = quote(webhook_secret(app, plugin, name), safe="")
        url = base + info.path.replace("{secret}", secret)
        found.append((name, url))
    return sorted(found)
