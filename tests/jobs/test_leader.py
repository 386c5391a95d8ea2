"""Leader election: Redis key with TTL, PostgreSQL advisory lock, each between two instances."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from pathlib import Path

import psycopg2
import pytest

from medianest_server.db import Database, open_database
from medianest_server.leader import PG_LEADER_LOCK_KEY, AlwaysLeader, PostgresLeader, RedisLeader
from tests.conftest import RedisEnv, eventually
from tests.jobs.conftest import always

LeaderCheck = Callable[[], bool]


async def holds(check: LeaderCheck) -> bool:
    return check()


async def test_always_leader_leads() -> None:
    leader = AlwaysLeader(instance_id="solo")
    await leader.start()
    assert leader.is_leader() and leader.instance_id == "solo"
    await leader.stop()


async def test_redis_leader_one_at_a_time_and_stop_hands_over(
    redis_env: RedisEnv,
) -> None:
    key = redis_env.prefix + "leader"
    a = RedisLeader(await redis_env.client(), key=key, ttl_seconds=0.6, instance_id="a")
    b = RedisLeader(await redis_env.client(), key=key, ttl_seconds=0.6, instance_id="b")
    client = await redis_env.client()
    await a.start()
    await eventually(lambda: holds(a.is_leader), what="a leading")
    await b.start()
    try:

        async def only_a() -> bool:
            return a.is_leader() and not b.is_leader() and await client.get(key) == b"a"

        # past the TTL: a kept the key by renewing it, and b never led meanwhile
        await always(only_a, for_seconds=1.0, what="a alone leading")
        await a.stop()
        assert not a.is_leader()
        await eventually(lambda: holds(b.is_leader), within=0.6, what="b taking over")
        assert await client.get(key) == b"b"
    finally:
        await a.stop()
        await b.stop()
    assert await client.get(key) is None  # released at stop


async def test_redis_leader_that_loses_its_key_stops_leading(redis_env: RedisEnv) -> None:
    key = redis_env.prefix + "leader"
    a = RedisLeader(await redis_env.client(), key=key, ttl_seconds=0.6, instance_id="a")
    await a.start()
    try:
        await eventually(lambda: holds(a.is_leader), what="a leading")
        # another instance got the key (e.g. after a long pause of this one): a must notice
        await (await redis_env.client()).set(key, "intruder", px=60_000)
        await eventually(lambda: holds(lambda: not a.is_leader()), what="a stepping down")
    finally:
        await a.stop()
    assert await (await redis_env.client()).get(key) == b"intruder"  # not deleted by a


@pytest.fixture
async def two_databases(postgres_url: str, tmp_path: Path) -> AsyncIterator[list[Database]]:
    """Two Database objects on the same PostgreSQL database, as two instances would have."""
    databases = [open_database(postgres_url, base_dir=tmp_path) for _ in range(2)]
    for db in databases:
        await db.connect()
    yield databases
    for db in databases:
        await db.close()


def lock_holders(postgres_url: str) -> list[int]:
    """The backend pids holding the leader lock, from a separate admin connection."""
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute(
            # advisory locks are per database: other tests' apps hold the same key elsewhere
            "SELECT pid FROM pg_locks WHERE locktype = 'advisory' AND granted "
            "AND database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((classid::bigint << 32) | objid::bigint) = %s",
            (PG_LEADER_LOCK_KEY,),
        )
        holders = [int(row[0]) for row in cursor.fetchall()]
    conn.close()
    return holders


async def test_postgres_leader_one_at_a_time_and_moves_when_the_leader_stops(
    two_databases: list[Database], postgres_url: str
) -> None:
    a, b = (PostgresLeader(db, retry_seconds=0.1) for db in two_databases)
    await a.start()
    await b.start()
    try:
        await eventually(lambda: holds(lambda: a.is_leader() or b.is_leader()), what="a leader")
        first, second = (a, b) if a.is_leader() else (b, a)
        assert not second.is_leader()
        assert len(await asyncio.to_thread(lock_holders, postgres_url)) == 1

        async def only_first() -> bool:
            return first.is_leader() and not second.is_leader()

        await always(only_first, for_seconds=0.5, what="one leader")  # five retries of the other
        await first.stop()
        assert not first.is_leader()
        await eventually(lambda: holds(second.is_leader), within=2, what="the other leading")
        assert not first.is_leader()
        assert len(await asyncio.to_thread(lock_holders, postgres_url)) == 1
    finally:
        await a.stop()
        await b.stop()
    assert await asyncio.to_thread(lock_holders, postgres_url) == []


async def test_postgres_leader_whose_connection_drops_loses_leadership(
    two_databases: list[Database], postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    leader = PostgresLeader(two_databases[0], retry_seconds=0.1)
    await leader.start()
    try:
        await eventually(lambda: holds(leader.is_leader), what="leading")
        [pid] = await asyncio.to_thread(lock_holders, postgres_url)
        caplog.clear()

        def terminate() -> None:
            with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
                cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
            conn.close()

        await asyncio.to_thread(terminate)

        async def lead_again_on_a_new_connection() -> bool:
            holders = await asyncio.to_thread(lock_holders, postgres_url)
            return leader.is_leader() and bool(holders) and holders != [pid]

        await eventually(lead_again_on_a_new_connection, what="leadership regained")
    finally:
        await leader.stop()
    messages = [r.getMessage() for r in caplog.records if r.name == "medianest.leader"]
    assert any("no longer the leader" in m for m in messages)


async def test_postgres_leader_needs_postgresql(tmp_path: Path) -> None:
    db = open_database(f"sqlite:///{tmp_path}/x.db", base_dir=tmp_path)
    with pytest.raises(TypeError, match="PostgreSQL"):
        PostgresLeader(db)
