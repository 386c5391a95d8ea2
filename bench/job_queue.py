"""Benchmark: job queue claim rate, claim + complete of 2,000 jobs by 4 concurrent claimers.

Target (issue: job queue and periodic tasks): 500 claims/s on SQLite and on PostgreSQL. Baseline,
measured in the same run on the same database with the same number of jobs and claimers: the same
two round trips per job without the queue logic, a single-row ``UPDATE … WHERE id = :id
RETURNING *`` (what a claim is at its cheapest) and a single-row ``UPDATE`` (the complete), so the
ratio reads as "a claim costs N x a plain primary-key update". Each run uses fresh rows; the
figure printed is the median of the runs. SQLite in a temporary directory; PostgreSQL at
127.0.0.1:5432 in a temporary database that is dropped afterwards (skipped if not running).

    .venv/bin/python bench/job_queue.py [--runs 3] [--jobs 2000] [--claimers 4] [--proposed-index]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import psycopg2

from medianest_server.db import (
    CORE_MIGRATIONS,
    Database,
    apply_migrations,
    load_migrations,
    open_database,
)
from medianest_server.jobs import JobQueue

POSTGRES_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
TARGET_CLAIMS_PER_SECOND = 500.0
TIMEOUT_SECONDS = 300
#: --proposed-index: a partial index matching the claim's ORDER BY, created in the temporary
#: database only (it is not in the migrations), to measure what it would change.
PROPOSED_INDEX = (
    "CREATE INDEX jobs_claim_idx ON jobs (queue, priority DESC, run_after, id) "
    "WHERE status = 'queued'"
)


@asynccontextmanager
async def sqlite_database() -> AsyncIterator[Database]:
    with tempfile.TemporaryDirectory(prefix="medianest-bench-") as directory:
        db = open_database(f"sqlite:///{directory}/bench.db", base_dir=Path(directory))
        await db.connect()
        try:
            yield db
        finally:
            await db.close()


def _admin(sql: str, *params: object) -> None:
    conn = psycopg2.connect(POSTGRES_ADMIN_URL, connect_timeout=3)
    try:
        conn.autocommit = True
        with conn.cursor() as cursor:
            cursor.execute(sql, params)
    finally:
        conn.close()


@asynccontextmanager
async def postgres_database() -> AsyncIterator[Database]:
    name = f"medianest_bench_{uuid.uuid4().hex[:12]}"
    _admin(f'CREATE DATABASE "{name}"')
    try:
        db = open_database(POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name, base_dir=Path("."))
        await db.connect()
        try:
            yield db
        finally:
            await db.close()
    finally:
        _admin(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
            "WHERE datname = %s AND pid <> pg_backend_pid()",
            name,
        )
        _admin(f'DROP DATABASE IF EXISTS "{name}"')


async def fill(db: Database, queue_name: str, n: int) -> list[int]:
    """Insert n queued jobs (not timed); returns their ids."""
    now = datetime.now(UTC)
    await db.execute_many(
        "INSERT INTO jobs (queue, kind, payload, status, priority, attempts, max_attempts, "
        "run_after, created_at, updated_at) VALUES (:queue, 'bench', :payload, 'queued', 0, 0, "
        "3, :now, :now, :now)",
        [{"queue": queue_name, "payload": {"n": i}, "now": now} for i in range(n)],
    )
    rows = await db.fetch_all(
        "SELECT id FROM jobs WHERE queue = :queue ORDER BY id", {"queue": queue_name}
    )
    return [int(row["id"]) for row in rows]


async def claim_rate(db: Database, n: int, claimers: int) -> float:
    """Jobs/s for claim + complete through the JobQueue, `claimers` at once."""
    name = f"bench-{uuid.uuid4().hex[:8]}"
    await fill(db, name, n)
    queue = JobQueue(db)

    async def claimer(worker_id: str) -> int:
        done = 0
        while (job := await queue.claim([name], worker_id=worker_id, lease_seconds=60)) is not None:
            if not await queue.complete(job.id, worker_id=worker_id, result={"ok": True}):
                raise RuntimeError(f"job {job.id} was not {worker_id}'s to complete")
            done += 1
        return done

    start = time.perf_counter()
    counts = await asyncio.gather(*(claimer(f"bench-{i}") for i in range(claimers)))
    elapsed = time.perf_counter() - start
    if sum(counts) != n:
        raise RuntimeError(f"{sum(counts)} claims for {n} jobs")
    return n / elapsed


async def baseline_rate(db: Database, n: int, claimers: int) -> float:
    """Jobs/s for the same two round trips per job as plain primary-key updates."""
    ids = await fill(db, f"base-{uuid.uuid4().hex[:8]}", n)

    async def updater(worker_id: str, mine: list[int]) -> None:
        for job_id in mine:
            now = datetime.now(UTC)
            row = await db.fetch_one(
                "UPDATE jobs SET status = 'running', attempts = attempts + 1, "
                "worker_id = :worker_id, lease_expires_at = :now, updated_at = :now "
                "WHERE id = :id RETURNING *",
                {"id": job_id, "worker_id": worker_id, "now": now},
            )
            if row is None:
                raise RuntimeError(f"job {job_id} vanished")
            await db.execute(
                "UPDATE jobs SET status = 'succeeded', result = :result, finished_at = :now, "
                "updated_at = :now WHERE id = :id",
                {"id": job_id, "result": {"ok": True}, "now": now},
            )

    start = time.perf_counter()
    await asyncio.gather(*(updater(f"base-{i}", ids[i::claimers]) for i in range(claimers)))
    return n / (time.perf_counter() - start)


async def measure(backend: str, runs: int, n: int, claimers: int, proposed_index: bool) -> None:
    opener = sqlite_database if backend == "sqlite" else postgres_database
    async with opener() as db:
        await apply_migrations(db, load_migrations("core", CORE_MIGRATIONS, db.dialect))
        if proposed_index:
            await db.execute(PROPOSED_INDEX)
            backend += "+index"
        claims: list[float] = []
        plain: list[float] = []
        for run in range(runs):
            if run % 2:  # alternate the order so neither always runs on a warmer database
                plain.append(await baseline_rate(db, n, claimers))
                claims.append(await claim_rate(db, n, claimers))
            else:
                claims.append(await claim_rate(db, n, claimers))
                plain.append(await baseline_rate(db, n, claimers))
    claim, base = statistics.median(claims), statistics.median(plain)
    verdict = "meets" if claim >= TARGET_CLAIMS_PER_SECOND else "MISSES"
    target = f"target {TARGET_CLAIMS_PER_SECOND:.0f} claims/s: {verdict}"
    print(
        f"{backend:<16} claim+complete {claim:8.0f} claims/s  ({target})  "
        f"baseline {base:8.0f} jobs/s  ratio {claim / base:.2f}"
    )


async def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--jobs", type=int, default=2000)
    parser.add_argument("--claimers", type=int, default=4)
    parser.add_argument(
        "--proposed-index",
        action="store_true",
        help="also measure with a partial index on the claim order (temporary database only)",
    )
    args = parser.parse_args(argv)
    variants = [False, True] if args.proposed_index else [False]
    print(f"{args.jobs} jobs, {args.claimers} concurrent claimers, median of {args.runs} runs")
    async with asyncio.timeout(TIMEOUT_SECONDS):
        for variant in variants:
            await measure("sqlite", args.runs, args.jobs, args.claimers, variant)
        try:
            _admin("SELECT 1")
        except psycopg2.OperationalError as exc:
            print(f"postgresql skipped: not reachable at 127.0.0.1:5432 ({exc})".strip())
            return 0
        for variant in variants:
            await measure("postgresql", args.runs, args.jobs, args.claimers, variant)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
