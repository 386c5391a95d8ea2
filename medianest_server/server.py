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


LEFTOVER_WAIT_SECONDS = 5.0


def run(app: web.Application, host: str, port: int, *, shutdown_timeout: float = 10.0) -> None:
    """Serve until a signal, then stop. Unlike `asyncio.run`, which waits without end for every
    task left at exit, tasks still running after the app's cleanup (a plugin's health check
    that swallows cancellation) get LEFTOVER_WAIT_SECONDS, are named in the log, and are left
    behind: the process exits."""
    loop = asyncio.new_event_loop()
    asyncio.set_event_loop(loop)
    try:
        loop.run_until_complete(serve(app, host, port, shutdown_timeout=shutdown_timeout))
    finally:
        try:
            _end_leftover_tasks(loop)
            loop.run_until_complete(loop.shutdown_asyncgens())
        finally:
            asyncio.set_event_loop(None)
            loop.close()


def _end_leftover_tasks(loop: asyncio.AbstractEventLoop) -> None:
    leftovers = asyncio.all_tasks(loop)
    if not leftovers:
        return
    for task in leftovers:
        task.cancel()
    done, stuck = loop.run_until_complete(asyncio.wait(leftovers, timeout=LEFTOVER_WAIT_SECONDS))
    for task in done:
        if not task.cancelled() and task.exception() is not None:
            log.warning(
                "a task failed while the server stopped",
                exc_info=task.exception(),
                extra={"task": task.get_name()},
            )
    for task in stuck:
        log.warning(
            "a task ignored its cancellation at exit and is left behind",
            extra={"task": task.get_name()},
        )
