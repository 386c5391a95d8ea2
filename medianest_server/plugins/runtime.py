"""Plugins while the server runs: what each one contributes (background tasks, health checks,
event handlers, supervised connections), and new settings applied to one plugin without
restarting the server.

A plugin that waits for its setup settings (`not_configured`) starts the moment an admin saves
them; an active plugin whose settings change is stopped (its tasks, checks and handlers with
it) and started again on the new values. Other instances pick the change up at their next
start. A plugin whose startup said "not ready yet" (`retrying`) is started again in the
background until it starts; new settings restart those attempts on the new values.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Collection, Mapping

from aiohttp import web

from ..appkeys import CONFIG, DISPATCHER, HEALTH, PLUGINS, SERVICES
from ..config import ConfigError, load_config
from ..connections import CONNECTIONS, LiveConnection
from ..errors import Conflict
from ..healthchecks import CheckOutcome
from ..settings import PluginSettings
from .loader import PluginRecord
from .startup_retry import STARTUP_RETRIES
from .status_record import record_statuses
from .types import HealthResult, SetupAction

log = logging.getLogger("medianest.plugins")

CONTRIBUTIONS_BUDGET_SECONDS = 10.0
TEST_BUDGET_SECONDS = 15.0


async def collect_contributions(app: web.Application, record: PluginRecord) -> None:
    """A plugin's tasks, checks, handlers and connections: all of them are taken, or none
    (plugin fails)."""
    manager = app[PLUGINS]
    owner, budget = record.name, CONTRIBUTIONS_BUDGET_SECONDS
    try:
        tasks = await manager.call(record, "medianest_background_tasks", budget=budget)
        checks = await manager.call(record, "medianest_health_checks", budget=budget)
        handlers = await manager.call(record, "medianest_event_handlers", budget=budget)
        connections = list(await manager.call(record, "medianest_connections", budget=budget) or ())
        if not all(isinstance(c, LiveConnection) for c in connections):
            raise TypeError("medianest_connections must return LiveConnection objects")
        if len({c.name for c in connections}) != len(connections):
            raise ValueError("two connections share a name")
    except TimeoutError:
        manager.fail(record, "startup", f"contributing tasks or checks took over {budget:g} s")
        return
    except Exception as exc:
        manager.fail(record, "startup", f"{type(exc).__name__}: {exc}")
        return
    for task in tasks or ():
        app[SERVICES].tasks.add(task, owner=owner)
    for check in checks or ():
        app[HEALTH].add(owner, check)
    if handlers:
        app[DISPATCHER].add(owner, handlers)
    for connection in connections:
        app[CONNECTIONS].add(connection, owner=owner)


async def start_plugin(app: web.Application, record: PluginRecord) -> None:
    """Run the plugin's startup, then take its contributions; a plugin that is not ready yet
    is started again in the background."""
    await app[PLUGINS].start_one(record)
    if record.active:
        await collect_contributions(app, record)
    elif record.status == "retrying":
        retry_startup(app, record)


def retry_startup(app: web.Application, record: PluginRecord) -> None:
    """Keep trying a `retrying` plugin's startup in the background until it starts."""
    manager = app[PLUGINS]

    async def attempt() -> None:
        await manager.start_one(record)
        if record.active:
            await collect_contributions(app, record)
        if record.status != "retrying":  # started, or failed for good: say so to the CLI
            services = app[SERVICES]
            await record_statuses(services.db, manager, services.clock)

    lock = manager.reload_locks.setdefault(record.name, asyncio.Lock())
    app[STARTUP_RETRIES].schedule(record, attempt, lock)


async def stop_plugin(app: web.Application, record: PluginRecord) -> None:
    """Stop its startup retries, connections, tasks and handlers, forget its checks, run its
    cleanup."""
    await app[STARTUP_RETRIES].cancel(record.name)
    await app[CONNECTIONS].remove_owner(record.name)
    await app[SERVICES].tasks.remove_owner(record.name)
    app[HEALTH].remove(record.name)
    await app[DISPATCHER].remove(record.name)
    await app[PLUGINS].stop_one(record)


async def apply_settings(app: web.Application, name: str) -> PluginRecord:
    """Read `[plugins.<name>]` again (the file and the environment) and apply it now.

    Returns the plugin's record with its new status (`active`, `not_configured`, or `failed`
    with the reason). A plugin that failed earlier or is disabled waits for the next start.
    Raises Conflict when the configuration file cannot be read or is invalid.
    """
    manager = app[PLUGINS]
    record = manager.records[name]
    path = app[CONFIG].path
    if path is None or not record.usable:
        return record
    try:
        fresh = load_config(path, environ=manager.environ)
    except ConfigError as exc:
        raise Conflict(f"the new settings are saved but cannot be applied: {exc}") from exc
    async with manager.reload_locks.setdefault(name, asyncio.Lock()):
        if record.active or record.status == "retrying":
            await stop_plugin(app, record)
        manager.reconfigure(record, fresh.plugins.settings.get(name, {}))
        if record.active:
            await start_plugin(app, record)
        services = app[SERVICES]
        await record_statuses(services.db, manager, services.clock)
    log.info(
        "plugin settings applied",
        extra={"plugin": name, "status": record.status, "error": record.error},
    )
    return record


def plugin_settings(app: web.Application) -> PluginSettings:
    return PluginSettings(app[CONFIG], app[PLUGINS], app[PLUGINS].environ)


async def test_connection(
    app: web.Application,
    name: str,
    submitted: Mapping[str, str] | None = None,
    *,
    only: Collection[str] | None = None,
) -> list[CheckOutcome]:
    """ "Test connection": the plugin's `medianest_test_connection` on the values in the form
    (validated, not saved; raises InvalidInput naming the bad fields), else its health checks
    on the saved settings. Plain words either way; nothing is written."""
    manager = app[PLUGINS]
    record = plugin_settings(app).record(name)  # NotFound for an unknown plugin
    if submitted is not None and manager.implements(record, "medianest_test_connection"):
        settings = plugin_settings(app).validate(name, submitted, only=only)
        started = time.perf_counter()
        try:
            result = await manager.call(
                record, "medianest_test_connection", budget=TEST_BUDGET_SECONDS, settings=settings
            )
            if not isinstance(result, HealthResult):
                raise TypeError(f"returned {type(result).__name__}, not HealthResult")
        except TimeoutError:
            result = HealthResult("down", f"No answer within {TEST_BUDGET_SECONDS:g} s.")
        except Exception as exc:
            log.warning("test connection failed: %s", exc, extra={"plugin": name})
            result = HealthResult("down", f"The test itself failed ({type(exc).__name__}).")
        latency = result.latency_ms
        if latency is None:
            latency = round((time.perf_counter() - started) * 1000, 1)
        now = app[SERVICES].clock.now()
        return [CheckOutcome(name, "connection", result.status, result.message, latency, now)]
    if record.active:
        return await app[HEALTH].run(name)
    message = "Save the settings first; the test runs on saved settings for this plugin."
    return [CheckOutcome(name, "connection", "down", message, None, app[SERVICES].clock.now())]


SETUP_ACTIONS_BUDGET_SECONDS = 0.5


async def setup_actions(app: web.Application, record: PluginRecord) -> list[SetupAction]:
    """The plugin's other ways to connect it (`medianest_setup_actions`); none if it fails."""
    if not record.usable or not app[PLUGINS].implements(record, "medianest_setup_actions"):
        return []
    try:
        found = await app[PLUGINS].call(
            record, "medianest_setup_actions", budget=SETUP_ACTIONS_BUDGET_SECONDS
        )
    except Exception as exc:
        log.warning("setup actions failed: %s", exc, extra={"plugin": record.name})
        return []
    return [action for action in found or () if isinstance(action, SetupAction)]


class AppSettingsWriter:
    """`ctx.save_settings`: a plugin saves some of its own settings and they apply at once."""

    def __init__(self, app: web.Application) -> None:
        self._app = app

    async def save(self, plugin: str, values: Mapping[str, str]) -> str:
        plugin_settings(self._app).save(plugin, values, only=list(values))
        record = await apply_settings(self._app, plugin)
        return record.status
