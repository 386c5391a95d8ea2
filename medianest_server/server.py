"""Run an application until SIGTERM or SIGINT, then stop it gracefully.

On a signal the listening socket closes at once, in-flight requests get up to
`[server] shutdown_timeout_seconds` to finish, then the app's cleanup closes the database.
"""

from __future__ import annotations

import asyncio
import logging
import signal

from aiohttp import web

from .logs import access_log_options

log = logging.getLogger("medianest.server")


async def serve(
    app: web.Application, host: str, port: int, *, shutdown_timeout: float = 10.0
) -> None:
    runner = web.AppRunner(
        app,
        **access_log_options(),
        shutdown_timeout=shutdown_timeout,
    )
    await runner.setup()
    try:
        site = web.TCPSite(runner, host, port, shutdown_timeout=shutdown_timeout)
        await site.start()
        log.info("listening", extra={"url": f"http://{host}:{port}"})
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        await stop.wait()
        log.info("shutting down", extra={"grace_seconds": shutdown_timeout})
    finally:
        await runner.cleanup()
    log.info("stopped")


def run(app: web.Application, host: str, port: int, *, shutdown_timeout: float = 10.0) -> None:
    asyncio.run(serve(app, host, port, shutdown_timeout=shutdown_timeout))
