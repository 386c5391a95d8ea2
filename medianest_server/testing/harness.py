"""`medianest_plugin`: one plugin of the assembled test app, seen from its author's side.

    async def test_widget(medianest_plugin, user_client):
        html = await medianest_plugin.render_widget("greeting", user_client.user)
        assert "Howdy" in html

What it gives: the plugin's own `ctx`; the URL (with its secret) of each of its webhooks;
running its health checks now; rendering one widget for a user; the events and notifications
it emitted since the test began; running one of its periodic tasks now, on the test's clock,
instead of waiting for its interval; and linking an account at another provider to a user.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from typing import Any

import aiohttp_jinja2
from aiohttp import web

from ..appkeys import HEALTH, PLUGINS, SERVICES
from ..auth.external import link_identity
from ..auth.models import User
from ..auth.services import AUTH_SERVICES
from ..events import Event
from ..healthchecks import CheckOutcome
from ..plugins.context import PluginContext
from ..plugins.loader import PluginRecord
from ..plugins.types import ExternalIdentity, Widget
from ..web.webhooks import webhook_path, webhook_secret


class PluginHarness:
    """Helpers around one loaded plugin of a running test app."""

    def __init__(self, app: web.Application, name: str) -> None:
        self.app = app
        self.name = name
        self.events: list[Event] = []  # what the plugin emitted (`<name>.*`) since the start
        self._watch: asyncio.Task[None] | None = None

    @property
    def record(self) -> PluginRecord:
        return self.app[PLUGINS].records[self.name]

    @property
    def ctx(self) -> PluginContext:
        """The plugin's own context, as its hooks receive it."""
        ctx = self.record.ctx
        if ctx is None:
            raise RuntimeError(f"{self.name} is {self.record.status}: {self.record.error}")
        return ctx

    def webhook_secret(self, hook: str) -> str:
        """The secret the core expects for the plugin's webhook `hook`."""
        return webhook_secret(self.app, self.name, hook)

    def webhook_url(self, hook: str) -> str:
        """The path (secret included) a sender posts the webhook `hook` to."""
        return f"{webhook_path(self.name, hook)}/{self.webhook_secret(hook)}"

    async def check_health(self) -> list[CheckOutcome]:
        """Run the plugin's health checks now, as the admin health page does."""
        return await self.app[HEALTH].run(self.name)

    async def render_widget(self, widget_id: str, user: User) -> str:
        """One of the plugin's dashboard widgets for `user`, rendered as the dashboard does;
        raises what its loader or template raised (no error card: you see the cause)."""
        widgets = await self.app[PLUGINS].call(
            self.record, "medianest_dashboard_widgets", user=user
        )
        widget = next(
            (w for w in widgets or () if isinstance(w, Widget) and w.id == widget_id), None
        )
        if widget is None:
            raise LookupError(f"{self.name} offers no widget {widget_id!r} to {user.username}")
        data = await widget.load()
        template = aiohttp_jinja2.get_env(self.app).get_template(widget.template)
        return template.render(data=data, widget=widget, user=user)

    async def notifications(self, user_id: int) -> list[dict[str, Any]]:
        """The notifications the plugin stored for a user (newest first)."""
        rows = await self.app[SERVICES].db.fetch_all(
            "SELECT id, title, body, link, read_at FROM notifications"
            " WHERE user_id = :user_id AND type = :type ORDER BY id DESC",
            {"user_id": user_id, "type": self.name},
        )
        return [dict(row) for row in rows]

    async def link_identity(self, user: User, identity: ExternalIdentity) -> None:
        """Link an account at another provider to `user`, as that provider's sign-in would
        from their profile: for plugins that find people through `ctx.identity` (Overseerr
        finds a person's account by the Plex id their Plex sign-in linked) without running
        that provider's flow in the test."""
        await link_identity(self.app[AUTH_SERVICES], user, identity, ip=None)

    async def run_task(self, task: str) -> None:
        """Run the plugin's periodic task `task` now and wait for it (its outcome is recorded
        as a scheduled run's would be); raises KeyError for an unknown task."""
        await self.app[SERVICES].tasks.run_now(self.name, task)

    async def emitted(self, event_type: str, *, within_seconds: float = 5.0) -> Event:
        """The first event of `event_type` the plugin emitted, waiting for it (bounded)."""
        async with asyncio.timeout(within_seconds):
            while True:
                for event in self.events:
                    if event.type == event_type:
                        return event
                await asyncio.sleep(0.01)

    @contextlib.asynccontextmanager
    async def capturing(self) -> AsyncIterator[PluginHarness]:
        subscription = self.app[SERVICES].events.subscribe(types=[f"{self.name}.*"])

        async def collect() -> None:
            async for event in subscription:
                self.events.append(event)

        self._watch = asyncio.create_task(collect())
        try:
            yield self
        finally:
            subscription.close()
            self._watch.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watch


__all__ = ["PluginHarness"]
