"""The MediaNest plugin contract: every hook a plugin may implement.

This module is the reference plugin authors read. A plugin is a Python package with an entry
point in the group ``medianest``; its module holds functions named after these hooks and marked
with ``@hookimpl`` (from ``medianest_server.plugin_api``). Rules that hold for every hook:

- Arguments are passed by keyword. An implementation names only the ones it needs:
  ``def medianest_nav_items(user): ...`` is as valid as ``def medianest_nav_items(ctx, user)``.
- An implementation may be a plain function or ``async def``, except the four called while the
  app is being built (``medianest_config_schema``, ``medianest_migrations``,
  ``medianest_routes``, ``medianest_webhooks``), which must be plain functions.
- ``ctx`` is the plugin's own :class:`~medianest_server.plugin_api.PluginContext`: its validated
  settings, the database, cache, event bus, job queue, HTTP client, secret box, data folder and
  logger. Each plugin gets its own.
- A hook that fails (raises, or overruns its time budget where it has one) fails for that plugin
  alone: the core logs it once and carries on with the other plugins.
- A function whose name starts with ``medianest_`` and is not listed here is an error for that
  plugin (a misspelt hook would otherwise be silently ignored).
- The contract only grows: new hooks and new optional arguments. Removing either is a new
  major version of MediaNest.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pluggy

if TYPE_CHECKING:
    from marshmallow import Schema

    # the modules below the contract, never the plugin_api façade on top of it (no loop)
    from .auth.models import User
    from .connections import LiveConnection
    from .plugins.context import PluginContext
    from .plugins.types import (
        EventHandler,
        HealthCheck,
        HealthResult,
        LoginProvider,
        NavItem,
        SearchGroup,
        SetupAction,
        Webhook,
        Widget,
    )
    from .routing import Routes
    from .tasks import Task

PROJECT = "medianest"
hookspec = pluggy.HookspecMarker(PROJECT)
hookimpl = pluggy.HookimplMarker(PROJECT)
"""Mark a function of your plugin module as a hook implementation: `@hookimpl`."""


@hookspec
def medianest_config_schema() -> type[Schema] | Schema | None:
    """Return the marshmallow schema of the plugin's ``[plugins.<name>]`` settings.

    The core validates the section with it at start (unknown keys are errors, with a "did you
    mean"), fills defaults, and hands the result to the plugin as ``ctx.config`` (a dict). The
    key ``enabled`` (default true) is added by the core. Each field may carry ``metadata``:

    - ``label``: what the settings form calls it ("Plex server address"); default: the key;
    - ``doc``: one sentence under the field in the form;
    - ``secret: True``: masked in the form, kept out of logs, ``<key>_file`` accepted;
    - ``setup: True``: the plugin cannot work without it. While one of these is empty the
      plugin is ``not_configured``: it loads and its routes are mounted, but it is not started,
      its routes answer "not connected yet" (except ``setup=True`` routes), and admins get a
      "Connect" card on the dashboard asking for these fields. Saving them starts it at once.

    The same schema drives the admin settings form, so give every field a ``load_default`` or
    mark it ``required``. A section that fails validation disables the plugin with the key path
    in the reason. ``medianest check`` validates the section with it too.
    """


@hookspec
def medianest_migrations() -> Path | None:
    """Return the folder of the plugin's SQL migrations, or ``None``.

    Files are named ``NNNN_<what>.sql``; ``NNNN_<what>.sqlite.sql`` and
    ``NNNN_<what>.postgres.sql`` replace the generic file on that database. They are applied in
    order, each in one transaction, at start-up and by ``medianest migrate``, and recorded with a
    checksum: changing an applied file stops the plugin. Tables must be named
    ``<plugin>_<noun>`` and rows that belong to a user reference ``users(id) ON DELETE CASCADE``.
    """


@hookspec
def medianest_startup(ctx: PluginContext) -> Any:
    """Open what the plugin needs while the server runs (clients, watchers).

    Return nothing, an awaitable, or make it an async generator: code before ``yield`` runs at
    start, code after it at shutdown (the same shape as aiohttp's ``cleanup_ctx``). An exception
    before the ``yield`` disables the plugin; the server serves on.

    Raise :class:`~medianest_server.plugin_api.PluginNotReady` ("Plex is not reachable yet")
    when the upstream is not reachable now: the plugin is ``retrying`` with that reason and the
    core runs its startup again in the background (5 s, doubling to 5 min) until it starts.
    """


@hookspec
def medianest_routes(ctx: PluginContext) -> Routes | None:
    """Return the plugin's HTTP routes as a :class:`~medianest_server.plugin_api.Routes` table.

    JSON routes (``routes.get(path, access=...)``) are mounted under ``/api/v1/<name>/`` and page
    routes (``routes.page(path, access=...)``) under ``/<name>/``. Every route declares its access:
    ``"public"``, ``"user"`` or ``"admin"``; the core enforces it before the handler runs. A path
    that collides with another plugin's disables the later plugin, naming both.
    """


@hookspec
def medianest_background_tasks(ctx: PluginContext) -> Iterable[Task]:  # type: ignore[empty-body]
    """Return periodic tasks (:class:`~medianest_server.plugin_api.Task`).

    Each runs every ``interval_seconds`` with jitter; after a failure it backs off exponentially
    and is logged once, and once more when it recovers. ``leader_only=True`` tasks run on one
    instance at a time when several share PostgreSQL or Redis. Tasks stop at shutdown.
    """


@hookspec
def medianest_health_checks(ctx: PluginContext) -> Iterable[HealthCheck]:  # type: ignore[empty-body]
    """Return health checks (:class:`~medianest_server.plugin_api.HealthCheck`).

    A check is a coroutine returning a :class:`~medianest_server.plugin_api.HealthResult`
    (``up``, ``degraded`` or ``down``, latency, message). It runs with its own timeout: one that
    hangs is reported ``down`` ("timed out"). Results feed the dashboard, the admin health page,
    the "test connection" button and metrics.
    """


@hookspec
def medianest_test_connection(  # type: ignore[empty-body]
    ctx: PluginContext, settings: Mapping[str, Any]
) -> HealthResult:
    """Try ``settings`` (validated by your schema, not saved yet) against the upstream service
    and say how it went: ``HealthResult("up", "Plex 1.41.3 (Home server)")`` or
    ``HealthResult("down", "Plex refused the token")``, in plain words.

    Called by the "Test connection" button of the admin settings form and of the dashboard's
    "Connect" card, before anything is saved, within 15 s. Without it the button runs the
    plugin's health checks on the saved settings instead. May be called while the plugin is
    ``not_configured``, so build what you need from ``settings``, not from startup state.
    """


@hookspec
def medianest_setup_actions(ctx: PluginContext) -> Iterable[SetupAction]:  # type: ignore[empty-body]
    """Return ways to connect the plugin other than typing its setup settings
    (:class:`~medianest_server.plugin_api.SetupAction`): "Sign in with Plex and pick your
    server". The dashboard's "Connect" card shows them as buttons above the form.

    Called for admins while the plugin is ``not_configured`` (and on the admin Plugins page);
    the pages they lead to are routes marked ``setup=True``. Keep it cheap (no upstream calls).
    """


@hookspec
def medianest_dashboard_widgets(  # type: ignore[empty-body]
    ctx: PluginContext, user: User
) -> Iterable[Widget]:
    """Return the dashboard widgets this user may see (:class:`.plugin_api.Widget`).

    Called per dashboard view within a time budget. Each widget's ``load`` coroutine provides the
    data its template (``<name>/widgets/...``) renders; a widget whose load fails or overruns is
    shown as an error card naming the plugin, never as a broken page. ``refresh_on`` lists event
    types that make the page reload the widget live.
    """


@hookspec
def medianest_nav_items(ctx: PluginContext, user: User) -> Iterable[NavItem]:  # type: ignore[empty-body]
    """Return menu entries for this user (:class:`~medianest_server.plugin_api.NavItem`).

    Called per page within a time budget; keep it cheap (no upstream calls).
    """


@hookspec
def medianest_search(ctx: PluginContext, user: User, query: str) -> SearchGroup | None:
    """Return this plugin's results for the header search box, or ``None``.

    Called for every search, every plugin concurrently, each within its time budget; a plugin
    that fails or overruns contributes an empty group with an error note, the others still
    answer.
    """


@hookspec
def medianest_webhooks(ctx: PluginContext) -> Iterable[Webhook]:  # type: ignore[empty-body]
    """Return inbound webhook handlers (:class:`~medianest_server.plugin_api.Webhook`).

    Each is mounted at ``/api/v1/webhooks/<name>/<hook>``. The core checks the secret before the
    handler runs: in the path (``/api/v1/webhooks/<name>/<hook>/<secret>``) or in the header the
    sender supports (``Webhook.secret_header``). A wrong secret is answered 401 and logged once.
    """


@hookspec
def medianest_login_providers(ctx: PluginContext) -> Iterable[LoginProvider]:  # type: ignore[empty-body]
    """Return sign-in methods (:class:`~medianest_server.plugin_api.LoginProvider`).

    The sign-in page lists them. The provider runs its own flow on its own routes and, once it
    knows who the person is and whether they may enter, calls ``ctx.complete_login`` with an
    :class:`~medianest_server.plugin_api.ExternalIdentity`; the core links or creates the user and
    starts the session.
    """


@hookspec
def medianest_event_handlers(  # type: ignore[empty-body]
    ctx: PluginContext,
) -> Mapping[str, EventHandler]:
    """Return ``{event type: coroutine(event)}`` to react to events from the core or other plugins.

    Types are ``<plugin>.<noun>.<verb>``; ``"plex.*"`` matches every type of a plugin. A handler
    that raises is logged once per failure; it never stops other handlers or the publisher.
    """


@hookspec
def medianest_user_removed(ctx: PluginContext, user: User) -> None:
    """Delete what the plugin keeps for a user who is being deleted (files, upstream state).

    Rows in the plugin's tables go by ``ON DELETE CASCADE``; this hook is for everything else.
    It runs before the user's row is deleted.
    """


@hookspec
def medianest_diagnostics(ctx: PluginContext) -> Mapping[str, Any]:  # type: ignore[empty-body]
    """Return facts for the support bundle on the admin pages (versions, counts, last sync).

    Never include secrets: values of settings marked ``secret`` are redacted by the core, but
    anything else you return is shown as is.
    """


@hookspec
def medianest_connections(ctx: PluginContext) -> Iterable[LiveConnection]:  # type: ignore[empty-body]
    """Return connections the core keeps open
    (:class:`~medianest_server.plugin_api.LiveConnection`): a WebSocket or Socket.IO client, a
    long poll; work that holds a connection rather than runs every few minutes (that is
    ``medianest_background_tasks``).

    ``run(link)`` holds the connection for as long as it lives and calls ``link.connected()``
    once it is up. When it returns or raises, the core starts it again with backoff; its state
    (connected, retrying since, last error, restarts) shows on the admin health page and in the
    support bundle. ``leader_only=True`` runs it on one instance at a time. Connections are
    cancelled at shutdown and when the plugin restarts (new settings).
    """


@hookspec
def medianest_image_hosts(ctx: PluginContext) -> Iterable[str]:  # type: ignore[empty-body]
    """Return the hosts whose images this plugin shows: ``["image.tmdb.org"]``,
    ``["*.ytimg.com"]`` (its subdomains), ``["192.168.1.20:5055"]`` (that port only).

    Pages never load images from other sites (``img-src 'self' data:``): put
    ``ctx.image_url(address)`` in your ``<img src>`` and the core's image proxy fetches the
    image from a host listed here (redirects only to listed hosts), checks it is JPEG, PNG,
    WebP or GIF (never SVG) under the ``[images] max_image_mb`` cap, keeps it on disk, and
    serves it to signed-in people. Called on every proxied image (settings may change), within
    2 s: keep it cheap, from ``ctx.config`` at most.
    """
