"""Run a subprocess in a process group of its own, and end the whole group with it.

A job that runs ``yt-dlp`` (which runs ``ffmpeg``) must not leave either behind when it is
cancelled or the worker stops: killing the direct child alone orphans its children. So the
process starts a new session (``start_new_session=True``: its pid is its group's id), and when
the block ends, however it ends, the group gets SIGTERM, a bounded wait, then SIGKILL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
from collections.abc import AsyncIterator, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

logger = logging.getLogger("medianest.jobs")

#: How long a process group has after SIGTERM before it gets SIGKILL.
TERMINATE_GRACE_SECONDS = 5.0

_Stream = int | IO[Any] | None


@contextlib.asynccontextmanager
async def run_process_group(
    argv: Sequence[str],
    *,
    stdin: _Stream = asyncio.subprocess.DEVNULL,
    stdout: _Stream = None,
    stderr: _Stream = None,
    cwd: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    terminate_grace_seconds: float = TERMINATE_GRACE_SECONDS,
) -> AsyncIterator[asyncio.subprocess.Process]:
    """Start ``argv`` in a new process group; on leaving the block, end every process in it.

    ``async with run_process_group(["yt-dlp", url], stdout=PIPE) as proc:`` gives the
    ``asyncio.subprocess.Process`` (read its streams, ``await proc.wait()``). When the block
    ends (normally, by an exception, or because the job was cancelled or the worker is
    stopping) whatever still runs in the group, grandchildren included, gets SIGTERM; after
    ``terminate_grace_seconds`` what remains gets SIGKILL. Leaving waits for the process, so
    its exit status is known and no zombie is left. A second cancellation during that wait
    sends SIGKILL at once. POSIX only.
    """
    process = await asyncio.create_subprocess_exec(
        *argv,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        cwd=cwd,
        env=None if env is None else dict(env),
        start_new_session=True,
    )
    try:
        yield process
    finally:
        try:
            await _end_group(process, terminate_grace_seconds)
        except BaseException:
            _signal_group(process.pid, signal.SIGKILL)  # cancelled again: no more waiting
            raise


def _signal_group(pgid: int, sig: int) -> bool:
    """Send ``sig`` to the group; ``False`` if nothing is left in it."""
    try:
        os.killpg(pgid, sig)
    except ProcessLookupError:
        return False
    except PermissionError:  # a pid reused outside our group: it is not ours to signal
        return False
    return True


def _group_alive(pgid: int) -> bool:
    """Whether a live (not zombie) process is left in the group."""
    if not _signal_group(pgid, 0):
        return False
    proc = Path("/proc")
    if not proc.is_dir():
        return True
    # A zombie answers signal 0 until its parent reaps it, and in a container init may never do
    # so: on Linux, look for a member that still runs.
    for entry in proc.iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        # "pid (comm) state ppid pgrp ...": comm may hold spaces and parentheses
        fields = stat[stat.rfind(")") + 2 :].split()
        if len(fields) >= 3 and fields[2] == str(pgid) and fields[0] not in ("Z", "X"):
            return True
    return False


async def _end_group(process: asyncio.subprocess.Process, grace_seconds: float) -> None:
    pgid = process.pid  # a session leader's pid is its group's id
    if not _signal_group(pgid, signal.SIGTERM):
        await process.wait()
        return
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_seconds
    # The leader is ours to wait for; the rest of the group is polled (their parent is init).
    while loop.time() < deadline:
        if process.returncode is not None and not _group_alive(pgid):
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(process.wait(), timeout=0.05)
    if _signal_group(pgid, signal.SIGKILL):
        logger.warning(
            "process group %d outlived SIGTERM by %.1f s and was killed",
            pgid,
            grace_seconds,
            extra={"pid": pgid},
        )
    await process.wait()
