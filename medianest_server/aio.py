"""Small asyncio helpers the services share."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any

log = logging.getLogger("medianest.aio")


async def cancel_and_wait(tasks: Iterable[asyncio.Future[Any]], within: float) -> bool:
    """Cancel `tasks` and wait up to `within` seconds for them to end; True if they all did.

    Unlike `with suppress(CancelledError): await task`, this neither swallows a cancellation
    of the caller itself nor waits forever on a task that ignored its own (a library that
    catches CancelledError and carries on): such a task is logged and left behind.
    """
    pending = [task for task in tasks if not task.done()]
    for task in pending:
        task.cancel()
    if not pending:
        return True
    _, still = await asyncio.wait(pending, timeout=within)
    for task in still:
        log.warning("a task did not stop within %.1f s of being cancelled: %r", within, task)
    return not still
