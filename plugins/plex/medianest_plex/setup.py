"""Connecting Plex without copying tokens: the owner signs in with Plex once and picks a server.

plex.tv lists every device the account can reach (`GET /api/v2/resources`, §1.3 A); the servers
(`provides` contains `server`) the account owns are offered, each connection tried at once
(`GET /identity`, the machine identifier must match) so the page says which address answers.
The chosen address and that server's `accessToken` become `url` and `token` in medianest.toml
(through `ctx.save_settings`: validated, written atomically with a `.bak`, applied at once).
The plex.tv token of the sign-in is kept encrypted in the cache for 15 minutes, for this admin
only, and never reaches the browser.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web
from medianest_server.plugin_api import (
    HealthResult,
    HttpClient,
    InvalidInput,
    PluginContext,
    Routes,
    SecretBoxError,
    User,
    current_user,
)

from .client import PlexServerClient, PlexTvClient
from .errors import PinExpired, PlexError, PlexUnauthorized, PlexUnavailable
from .models import PlexClientInfo, PlexResource
from .service import client_identifier

SETUP_TTL_SECONDS = 15 * 60
PROBE_TIMEOUT_SECONDS = 3.0
PIN_CHECK_SECONDS = 2


@dataclass(frozen=True)
class ConnectionChoice:
    """One address of a server, and whether MediaNest reached that server through it."""

    uri: str
    local: bool
    relay: bool
    works: bool
    note: str


@dataclass(frozen=True)
class ServerChoice:
    """A server the signed-in account can reach, as the picker shows it."""

    name: str
    machine_identifier: str
    version: str | None
    owned: bool
    online: bool
    owner: str | None
    connections: tuple[ConnectionChoice, ...]

    @property
    def usable(self) -> bool:
        return self.owned and any(c.works for c in self.connections)


def client_info(ctx: PluginContext) -> PlexClientInfo:
    return PlexClientInfo(
        client_identifier=client_identifier(ctx.config, Path(ctx.data_dir)),
        product=str(ctx.config.get("product") or "MediaNest"),
    )


async def probe(
    http: HttpClient, info: PlexClientInfo, uri: str, machine_identifier: str
) -> ConnectionChoice:
    """Try one connection: does the server answering there have this machine identifier?"""
    # an upstream name per address: a dead address must not open the breaker of a live one
    client = PlexServerClient(
        http,
        uri,
        token=None,
        info=info,
        timeout_seconds=PROBE_TIMEOUT_SECONDS,
        upstream=f"Plex at {uri}",
    )
    client.retries = 0  # a dead address is reported, not retried while the page waits
    try:
        identity = await client.identity()
    except PlexError:
        return ConnectionChoice(uri, False, False, False, "does not answer from here")
    if identity.machine_identifier != machine_identifier:
        return ConnectionChoice(uri, False, False, False, "another server answers there")
    return ConnectionChoice(uri, False, False, True, "answers")


async def list_servers(ctx: PluginContext, plex_tv_token: str) -> list[ServerChoice]:
    """The servers the account of `plex_tv_token` can reach, owned ones first, each owned
    server's connections tried concurrently."""
    info = client_info(ctx)
    tv = PlexTvClient(ctx.http, info, base_url=str(ctx.config["plex_tv_url"]))
    servers = [r for r in await tv.resources(plex_tv_token) if r.is_server]

    async def choice(resource: PlexResource) -> ServerChoice:
        connections: tuple[ConnectionChoice, ...] = ()
        if resource.owned:
            probes = await asyncio.gather(
                *(
                    probe(ctx.http, info, c.uri, resource.machine_identifier)
                    for c in resource.connections
                )
            )
            connections = tuple(
                ConnectionChoice(c.uri, c.local, c.relay, p.works, p.note)
                for c, p in zip(resource.connections, probes, strict=True)
            )
        return ServerChoice(
            resource.name,
            resource.machine_identifier,
            resource.product_version,
            resource.owned,
            resource.presence,
            resource.source_title,
            connections,
        )

    choices = await asyncio.gather(*(choice(r) for r in servers))
    return sorted(choices, key=lambda s: (not s.owned, not s.usable, s.name.lower()))


async def test_settings(ctx: PluginContext, settings: dict[str, Any]) -> HealthResult:
    """ "Test connection" on a URL and token not saved yet."""
    url, token = str(settings.get("url") or ""), str(settings.get("token") or "")
    if not url or not token:
        return HealthResult("down", "Enter the Plex server address and the owner's token.")
    server = PlexServerClient(ctx.http, url, token=token, info=client_info(ctx), timeout_seconds=10)
    started = ctx.clock.monotonic()
    try:
        identity = await server.identity()
        described = await server.server_info()  # needs the token
    except PlexUnauthorized:
        return HealthResult("down", "Plex answers at that address but refused the token.")
    except PlexUnavailable:
        return HealthResult("down", "No Plex server answers at that address.")
    except PlexError as exc:
        return HealthResult("down", f"That does not look like a Plex server ({exc.detail}).")
    latency = round((ctx.clock.monotonic() - started) * 1000, 1)
    return HealthResult(
        "up", f"Connected to {described.friendly_name} (Plex {identity.version}).", latency
    )


# -- pages -------------------------------------------------------------------------------------


def add_setup_routes(routes: Routes, ctx: PluginContext) -> None:
    """/plex/setup: sign in with Plex, pick a server, save. Admins only; served while the
    plugin is not configured yet (`setup=True`)."""
    from .routes import message_page, render  # routes.py mounts these: imported when called

    def admin(request: web.Request) -> User:
        user = current_user(request)
        assert user is not None  # access="admin"
        return user

    def tv() -> PlexTvClient:
        return PlexTvClient(ctx.http, client_info(ctx), base_url=str(ctx.config["plex_tv_url"]))

    async def kept_token(user: User) -> str | None:
        sealed = await ctx.cache.get(f"setup-token:{user.id}")
        if not isinstance(sealed, str):
            return None
        try:
            return ctx.secrets.decrypt(sealed)
        except SecretBoxError:
            return None

    async def trouble(request: web.Request, exc: PlexError) -> web.Response:
        return await message_page(
            request,
            f"{exc.upstream} cannot be asked right now",
            f"MediaNest could not list your Plex servers ({exc.detail}). Try again in a moment, "
            "or enter the address and token yourself on the dashboard.",
            status=503 if isinstance(exc, PlexUnavailable) else 502,
            retry_url="/plex/setup",
        )

    @routes.page("/setup", access="admin", setup=True)
    async def setup_page(request: web.Request) -> web.Response:
        """The server picker, or the invitation to sign in with Plex first."""
        user = admin(request)
        token = await kept_token(user)
        context: dict[str, Any] = {"servers": None, "error": None, "current": ctx.config["url"]}
        if token is not None:
            try:
                context["servers"] = await list_servers(ctx, token)
            except PlexUnauthorized:
                await ctx.cache.delete(f"setup-token:{user.id}")
            except PlexError as exc:
                return await trouble(request, exc)
        return await render(request, "plex/setup.html", context)

    @routes.page("/setup/start", access="admin", setup=True)
    async def setup_start(request: web.Request) -> web.Response:
        """A PIN for this admin, then to Plex to approve it (back to /plex/setup/check)."""
        user = admin(request)
        client = tv()
        try:
            pin = await client.create_pin(strong=True)
        except PlexError as exc:
            return await trouble(request, exc)
        await ctx.cache.set(
            f"setup-pin:{user.id}", {"id": pin.id, "code": pin.code}, SETUP_TTL_SECONDS
        )
        back = ctx.absolute_url("/plex/setup/check")  # base_url, never the Host header
        raise web.HTTPSeeOther(client.auth_url(pin, forward_url=back))

    @routes.page("/setup/check", access="admin", setup=True)
    async def setup_check(request: web.Request) -> web.Response:
        """Has Plex approved this admin's PIN? Then keep the token and show the servers."""
        user = admin(request)
        stored = await ctx.cache.get(f"setup-pin:{user.id}")
        if not isinstance(stored, dict):
            raise web.HTTPSeeOther("/plex/setup")
        limit = await ctx.ratelimiter.hit(
            f"plex:setup-pin:{stored['id']}", limit=1, window_seconds=PIN_CHECK_SECONDS
        )
        try:
            pin = await tv().check_pin(int(stored["id"])) if limit.allowed else None
        except PinExpired:
            await ctx.cache.delete(f"setup-pin:{user.id}")
            return await message_page(
                request,
                "The Plex sign-in expired",
                "The code was not approved in time. Start again to get a new one.",
                status=410,
                retry_url="/plex/setup/start",
                retry_label="Sign in with Plex again",
            )
        except PlexError as exc:
            return await trouble(request, exc)
        if pin is None or not pin.auth_token:
            return await render(
                request,
                "plex/setup_wait.html",
                {"code": stored["code"], "check_url": "/plex/setup/check"},
            )
        await ctx.cache.delete(f"setup-pin:{user.id}")
        await ctx.cache.set(
            f"setup-token:{user.id}", ctx.secrets.encrypt(pin.auth_token), SETUP_TTL_SECONDS
        )
        raise web.HTTPSeeOther("/plex/setup")

    @routes.page("/setup", access="admin", method="POST", setup=True)
    async def setup_pick(request: web.Request) -> web.Response:
        """Save the chosen server's address and access token, and start the plugin on them."""
        user = admin(request)
        form = await request.post()
        if form.get("action") == "forget":
            await ctx.cache.delete(f"setup-token:{user.id}")
            raise web.HTTPSeeOther("/plex/setup")
        token = await kept_token(user)
        if token is None:
            raise web.HTTPSeeOther("/plex/setup")
        # one radio button per address: "<machine identifier> <uri>"
        machine, _, uri = str(form.get("pick", "")).partition(" ")
        try:
            resources = await tv().resources(token)
        except PlexError as exc:
            return await trouble(request, exc)
        chosen = next(
            (r for r in resources if r.is_server and r.owned and r.machine_identifier == machine),
            None,
        )
        if chosen is None or not chosen.access_token:
            raise InvalidInput(
                "Choose one of the servers your Plex account owns.",
                details={"server": ["not one of your servers"]},
            )
        if uri not in {c.uri for c in chosen.connections}:
            raise InvalidInput(
                f"Choose one of the addresses of {chosen.name}.",
                details={"uri": ["not an address of this server"]},
            )
        status = await ctx.save_settings({"url": uri, "token": chosen.access_token})
        if status == "active":
            await ctx.cache.delete(f"setup-token:{user.id}")
            raise web.HTTPSeeOther("/?connected=plex")
        return await message_page(
            request,
            "Plex is not connected",
            f"The settings for {chosen.name} are saved, but the Plex plugin did not start "
            "with them; the Plugins page in the admin area says why.",
            status=502,
            retry_url="/admin/plugins#plugin-plex",
            retry_label="Open the Plugins page",
        )
