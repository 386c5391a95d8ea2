"""Delivering events to the handlers plugins declare with `medianest_event_handlers`."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping

from ..aio import cancel_and_wait
from ..events import Event, EventBus, Subscription
from ..plugins.types import EventHandler

log = logging.getLogger("medianest.events")


class EventDispatcher:
    """One subscription and one task per plugin; a failing handler is logged, never fatal."""

    def __init__(self, bus: EventBus) -> None:
        self._bus = bus
        self._running: dict[str, tuple[Subscription, asyncio.Task[None]]] = {}

    def add(self, plugin: str, handlers: Mapping[str, EventHandler]) -> None:
        if not handlers:
            return
        if plugin in self._running:
            raise ValueError(f"{plugin} already has event handlers")
        subscription = self._bus.subscribe(types=list(handlers))
        task = asyncio.create_task(
            self._deliver(plugin, subscription, dict(handlers)), name=f"events:{plugin}"
        )
        self._running[plugin] = (subscription, task)

    async def remove(self, plugin: str) -> None:
        """Stop delivering to a plugin's handlers (it is being restarted)."""
        running = self._running.pop(plugin, None)
        if running is not None:
            running[0].close()
            await cancel_and_wait([running[1]], within=10.0)

    async def _deliver(
        self, plugin: str, subscription: Subscription, handlers: dict[str, EventHandler]
    ) -> None:
        async for event in subscription:
            for pattern, handler in handlers.items():
                if not _matches(pattern, event):
                    continue
                try:
                    await handler(event)
                except Exception:
                    log.exception(
                        "event handler failed",
                        extra={"plugin": plugin, "event_type": event.type, "event_id": event.id},
                    )

    async def close(self) -> None:
        for subscription, _ in self._running.values():
            subscription.close()
        await cancel_and_wait([task for _, task in self._running.values()], within=10.0)
        self._running.clear()


def _matches(pattern: str, event: Event) -> bool:
    if pattern == "*":
        return True
    if pattern.endswith(".*"):
        return event.type.startswith(pattern[:-1])
    return event.type == pattern
