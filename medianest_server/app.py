"""`create_app(config)`: build the web.Application, its services, plugins and routes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

from aiohttp import web
from aiohttp_session import session_middleware

from . import usercache
from .appkeys import CONFIG, DB, DISPATCHER, HEALTH, MIGRATIONS, PLUGINS, SERVICES
from .auth.middleware import authentication_middleware
from .auth.models import User
from .auth.services import AUTH_SERVICES, build_auth
from .auth.sessions import DatabaseSessionStorage
from .clock import SYSTEM_CLOCK, Clock
from .config import Config
from .connections import CONNECTIONS, ConnectionSupervisor
from .db import CORE_MIGRATIONS, apply_migrations, load_migrations
from .healthchecks import HealthRegistry
from .logs import redactor
from .looplag import LOOP_LAG, LoopLagMonitor, watch_event_loop
from .plugins.context import PluginContext
from .plugins.dispatch import EventDispatcher
from .plugins.loader import Candidate, PluginManager, PluginRecord, valid_plugin_name
from .plugins.runtime import AppSettingsWriter, collect_contributions, retry_startup
from .plugins.startup_retry import STARTUP_RETRIES, StartupRetries
from .plugins.status_record import record_statuses
from .routing import Routes
from .services import Services, build_services
from .web import (
    access,
    account_api,
    admin,
    admin_pages,
    auth_pages,
    dashboard,
    health,
    image_proxy,
    openapi,
    pages,
    plugin_static,
    profile,
    realtime,
    webhooks,
)
from .web.middlewares import error_middleware, request_id_middleware
from .web.security import forwarded_headers, security_headers
from .web.templating import setup_templates

log = logging.getLogger("medianest.app")

# the core's own behaviour, registered through the same hooks third parties use
DEFAULT_PLUGINS: list[tuple[str, ModuleType]] = [
    ("core.health", health),
    ("core.pages", pages),
    ("core.admin", admin),
    ("core.account", account_api),
    ("core.auth_pages", auth_pages),
    ("core.dashboard", dashboard),
    ("core.profile", profile),
    ("core.admin_pages", admin_pages),
    ("core.openapi", openapi),
    ("core.realtime", realtime),
    ("core.plugin_static", plugin_static),
    ("core.image_proxy", image_proxy),
]


def create_app(
    config: Config,
    *,
    plugins: Sequence[Candidate] | None = None,
    environ: Mapping[str, str] | None = None,
    clock: Clock = SYSTEM_CLOCK,
    sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
) -> web.Application:
    """Assemble the application for `config`. Raises UnknownDatabaseURL for a bad database URL.

    `plugins` replaces entry-point discovery (tests pass their own); `sleep` is the wait of
    plugin startup retries and connection restarts (tests pass one driven by their clock).
    Nothing is opened here:
    the database connects and migrates, plugins start, and background tasks run when the app
    starts (cleanup_ctx), and all of it stops when the app stops.
    """
    redactor.add(*config.secret_values())
    services = build_services(config, clock=clock)
    manager = PluginManager(config, builtins=DEFAULT_PLUGINS, candidates=plugins, environ=environ)
    manager.load()

    async def remove_user_everywhere(user: User) -> None:
        """Before a user's rows go, each plugin deletes the files and upstream state it keeps."""
        await manager.call_each("medianest_user_removed", budget=60, user=user)

    auth = build_auth(config, services, on_remove=remove_user_everywhere)
    https = config.server.base_url.startswith("https://")
    app = web.Application(
        middlewares=[
            request_id_middleware,  # first: the access line of every request carries its id
            forwarded_headers(config.server.trusted_proxies),
            security_headers(https=https),
            error_middleware,
            session_middleware(DatabaseSessionStorage(auth.sessions, secure=https)),
            authentication_middleware,
            access.access_middleware,
        ],
        client_max_size=int(config.server.max_request_body_mb * 1024 * 1024),
    )
    app[AUTH_SERVICES] = auth
    app[CONFIG] = config
    app[SERVICES] = services
    app[DB] = services.db
    app[PLUGINS] = manager
    app[HEALTH] = HealthRegistry(clock=clock)
    app[LOOP_LAG] = LoopLagMonitor(clock=clock)
    app[STARTUP_RETRIES] = StartupRetries(clock=clock, sleep=sleep)
    app[CONNECTIONS] = ConnectionSupervisor(leader=services.leader, clock=clock, sleep=sleep)
    app[access.ROUTE_TABLE] = {}
    setup_templates(app, _plugin_template_dirs(manager))
    plugin_static.setup_plugin_static(app)  # plugin_static() and plugin_assets() in templates

    accounts = auth_pages.BrowserAccounts(auth)
    writer = AppSettingsWriter(app)
    for record in manager.usable():
        record.ctx = _context(record, services)
        record.ctx.accounts = accounts
        record.ctx.settings_writer = writer
    _mount_plugin_routes(app, manager)
    _mount_failed_placeholders(app, manager)

    # open event streams and sockets end first, or shutdown would wait out its grace period
    app.on_shutdown.append(realtime.close_connections)
    app.cleanup_ctx.append(watch_event_loop)  # first: it also watches plugins start
    app.cleanup_ctx.append(_data_dir)
    app.cleanup_ctx.append(_database)
    app.cleanup_ctx.append(_plugins)
    app.cleanup_ctx.append(health.running_checks)  # stopped before the plugins they check
    return app


def _plugin_template_dirs(manager: PluginManager) -> list[Path]:
    folders = []
    for record in manager.usable():
        module_file = getattr(record.module, "__file__", None)
        if module_file and not record.builtin:
            folder = Path(module_file).parent / "templates"
            if folder.is_dir():
                folders.append(folder)
    return folders


def _context(record: PluginRecord, services: Services) -> PluginContext:
    name = "core" if record.builtin else record.name
    return PluginContext(
        name=name,
        config=record.config,
        db=services.db,
        cache=services.cache.namespace(f"plugin:{name}"),
        events=services.events,
        jobs=services.jobs,
        http=services.http,
        secrets=services.secrets,
        ratelimiter=services.ratelimiter,
        clock=services.clock,
        data_dir=services.config.data_dir / "plugins" / name,
        services=services.registry,
        notifications=services.notifications,
        base_url=services.config.server.base_url,
    )


def _mount_failed_placeholders(app: web.Application, manager: PluginManager) -> None:
    """A plugin that failed before its routes were known (import, register, config) still owns
    its URL prefixes: they answer 503 with the reason (for admins), not 404."""
    for record in list(manager.records.values()):
        if record.builtin or record.status != "failed" or not valid_plugin_name(record.name):
            continue
        placeholder = Routes()
        placeholder.route("*", "/{tail:.*}", access="public")(_unavailable)
        placeholder.route("*", "/{tail:.*}", access="public", kind="page")(_unavailable)
        with contextlib.suppress(access.RouteCollision):  # an active plugin answers there
            access.mount_routes(app, record.name, placeholder, builtin=False)


async def _unavailable(request: web.Request) -> web.StreamResponse:
    raise web.HTTPServiceUnavailable()  # never reached: the access check answers first


def _mount_plugin_routes(app: web.Application, manager: PluginManager) -> None:
    """Routes and webhooks of every usable plugin; a collision disables the later plugin."""
    for record in manager.usable():
        try:
            routes = manager.call_sync(record, "medianest_routes")
            if routes is not None:
                if not isinstance(routes, Routes):
                    raise TypeError(
                        f"medianest_routes returned {type(routes).__name__}; return a "
                        "medianest_server.plugin_api.Routes"
                    )
                access.mount_routes(app, record.name, routes, builtin=record.builtin)
            hooks = manager.call_sync(record, "medianest_webhooks")
            if hooks:
                webhooks.mount_webhooks(app, record.name, list(hooks))
        except Exception as exc:
            manager.fail(
                record,
                "routes",
                str(exc)
                if isinstance(exc, access.RouteCollision)
                else f"{type(exc).__name__}: {exc}",
            )


async def _data_dir(app: web.Application) -> AsyncIterator[None]:
    """The data folder, and one folder per active plugin inside it."""
    folders = [app[CONFIG].data_dir] + [
        record.ctx.data_dir
        for record in app[PLUGINS].usable()
        if record.ctx is not None and not record.builtin
    ]
    for folder in folders:
        await asyncio.to_thread(folder.mkdir, parents=True, exist_ok=True)
    yield


async def _database(app: web.Application) -> AsyncIterator[None]:
    """Connect, apply the core's and every active plugin's migrations; close at the end."""
    services = app[SERVICES]
    db = services.db
    await db.connect()
    try:
        core = load_migrations("core", CORE_MIGRATIONS, db.dialect)
        _log_applied(await apply_migrations(db, core))
        manager = app[PLUGINS]
        _log_applied(await manager.apply_migrations(db))
        app[MIGRATIONS] = core + manager.known_migrations()
        yield
    finally:
        await db.close()
        log.info("database closed", extra={"database": db.url_for_display})


def _log_applied(applied: Sequence[Any]) -> None:
    for migration in applied:
        log.info(
            "migration applied",
            extra={"component": migration.component, "migration": migration.name},
        )


async def _plugins(app: web.Application) -> AsyncIterator[None]:
    """Start services and plugins, then what plugins contribute: tasks, checks, handlers,
    connections; plugins not ready yet are started again in the background until they start."""
    services = app[SERVICES]
    manager = app[PLUGINS]
    await services.start()
    await manager.start()
    dispatcher = EventDispatcher(services.events)
    app[DISPATCHER] = dispatcher
    for record in manager.active():
        await collect_contributions(app, record)
    await record_statuses(services.db, manager, services.clock)  # for `medianest plugins`
    await services.start_background()
    await app[CONNECTIONS].start()
    for record in [r for r in manager.records.values() if r.status == "retrying"]:
        retry_startup(app, record)
    forgetting = usercache.start_listener(services.users, services.events)
    code = await app[AUTH_SERVICES].setup.code()
    if code is not None:
        log.warning(
            "no admin yet: open %s/setup and enter the setup code %s",
            app[CONFIG].server.base_url,
            code,
        )
    try:
        yield
    finally:
        await app[STARTUP_RETRIES].stop()
        await app[CONNECTIONS].stop()
        forgetting.cancel()
        await asyncio.gather(forgetting, return_exceptions=True)
        await dispatcher.close()
        await services.tasks.stop()
        await manager.stop()
        await services.close()
