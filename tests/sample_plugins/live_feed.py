"""A plugin that holds a WebSocket open to its upstream (`url`) and keeps what it is sent; the
core supervises the connection."""

from __future__ import annotations

import aiohttp
from marshmallow import Schema, fields

from medianest_server.plugin_api import (
    ConnectionLink,
    LiveConnection,
    PluginContext,
    hookimpl,
)

received: list[str] = []
closed: list[str] = []  # one entry each time a connection of ours ended, cancelled or not


class FeedSettings(Schema):
    url = fields.String(required=True, metadata={"doc": "the feed's WebSocket address"})


@hookimpl
def medianest_config_schema() -> type[Schema]:
    return FeedSettings


@hookimpl
def medianest_connections(ctx: PluginContext) -> list[LiveConnection]:
    async def listen(link: ConnectionLink) -> None:
        url = ctx.config["url"]
        try:
            async with (
                aiohttp.ClientSession() as session,
                session.ws_connect(url, heartbeat=30) as ws,
            ):
                link.connected()
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        received.append(message.data)
            raise ConnectionError("the feed closed the connection")
        finally:
            closed.append(url)

    return [LiveConnection("feed", listen)]
