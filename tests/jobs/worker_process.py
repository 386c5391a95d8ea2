"""A worker process for the crash test: runs a Worker over a database until it is killed.

    python -m tests.jobs.worker_process DATABASE_URL BASE_DIR STARTED_FILE

The handler of kind ``download`` writes the job id and this worker's id to STARTED_FILE (renamed
into place, so the test never reads half a file) and then waits forever.
"""

from __future__ import annotations

import asyncio
import os
import sys
from pathlib import Path
from typing import Any

from medianest_server.db import open_database
from medianest_server.jobs import Job, JobContext, JobQueue, Worker


async def main(url: str, base_dir: str, started_file: str) -> None:
    db = open_database(url, base_dir=Path(base_dir))
    await db.connect()
    worker: Worker

    async def hang(job: Job, ctx: JobContext) -> Any:
        target = Path(started_file)
        partial = target.with_suffix(".partial")
        partial.write_text(f"{job.id} {worker.worker_id}")
        os.replace(partial, target)
        await asyncio.Event().wait()

    worker = Worker(
        JobQueue(db),
        queues=["downloads"],
        handlers={"download": hang},
        lease_seconds=1.0,
        poll_interval_seconds=0.05,
    )
    await worker.start()
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
