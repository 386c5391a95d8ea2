"""What a store sees of the Database API, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest

from medianest_server.db import Database, DatabaseError, IntegrityError, open_database

THINGS = {
    "sqlite": """
        CREATE TABLE things (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT UNIQUE,
            at TIMESTAMP,
            doc JSON,
            flag BOOLEAN,
            blob BLOB,
            n INTEGER
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
    """,
    "postgresql": """
        CREATE TABLE things (
            id BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
            name TEXT UNIQUE,
            at TIMESTAMPTZ,
            doc JSONB,
            flag BOOLEAN,
            blob BYTEA,
            n BIGINT
        );
        CREATE TABLE counters (name TEXT PRIMARY KEY, n INTEGER NOT NULL);
    """,
}

INSERT = (
    "INSERT INTO things (name, at, doc, flag, blob, n) "
    "VALUES (:name, :at, :doc, :flag, :blob, :n) RETURNING id"
)


@pytest.fixture
async def things(raw_db: Database) -> Database:
    await raw_db.execute_script(THINGS[raw_db.dialect])
    return raw_db


def thing(name: str | None, **values: object) -> dict[str, object]:
    return {"name": name, "at": None, "doc": None, "flag": None, "blob": None, "n": None} | values


async def test_every_value_type_round_trips(things: Database) -> None:
    paris = timezone(timedelta(hours=2))
    at = datetime(2024, 5, 1, 14, 30, 15, 123456, tzinfo=paris)
    doc = {"title": "Amélie", "tags": ["film", None, 1.5], "seen": {"by": [1, 2]}, "ok": True}
    first = await things.fetch_val(
        INSERT, thing("full", at=at, doc=doc, flag=True, blob=b"\x00\xffraw", n=2**40)
    )
    second = await things.fetch_val(INSERT, thing("list", doc=[1, "two", {}], flag=False))
    third = await things.fetch_val(INSERT, thing(None))
    assert isinstance(first, int) and first < second < third

    full = await things.fetch_one("SELECT * FROM things WHERE id = :id", {"id": first})
    assert full == {
        "id": first,
        "name": "full",
        "at": at,
        "doc": doc,
        "flag": True,
        "blob": b"\x00\xffraw",
        "n": 2**40,
    }
    assert full["at"].utcoffset() == timedelta(0)
    assert type(full["flag"]) is bool and type(full["blob"]) is bytes

    rows = await things.fetch_all(
        "SELECT doc, flag, name FROM things WHERE id > :id", {"id": first}
    )
    assert rows == [
        {"doc": [1, "two", {}], "flag": False, "name": "list"},
        {"doc": None, "flag": None, "name": None},
    ]


async def test_json_scalars_are_stored_as_json_text(things: Database) -> None:
    for name, value in [("number", 30), ("text", "dark"), ("null", None), ("yes", True)]:
        await things.execute(INSERT, thing(name, doc=json.dumps(value)))
    rows = await things.fetch_all("SELECT name, doc FROM things ORDER BY id")
    assert [(row["name"], row["doc"]) for row in rows] == [
        ("number", 30),
        ("text", "dark"),
        ("null", None),
        ("yes", True),
    ]


async def test_naive_datetimes_are_refused(things: Database) -> None:
    with pytest.raises(ValueError, match="naive datetime"):
        await things.execute(INSERT, thing("naive", at=datetime(2024, 1, 1, 12, 0)))
    assert await things.fetch_val("SELECT count(*) FROM things") == 0


async def test_timestamps_compare_and_sort_in_time_order(things: Database) -> None:
    base = datetime(2024, 3, 1, 12, 0, tzinfo=UTC)
    moments = {
        "a": base.astimezone(timezone(timedelta(hours=9))),  # same instant, other zone
        "b": base + timedelta(microseconds=1),
        "c": (base - timedelta(minutes=5)).astimezone(timezone(timedelta(hours=-7))),
        "d": base + timedelta(days=400),
    }
    for name, at in moments.items():
        await things.execute(INSERT, thing(name, at=at))
    ordered = await things.fetch_all("SELECT name FROM things ORDER BY at")
    assert [row["name"] for row in ordered] == ["c", "a", "b", "d"]
    later = await things.fetch_all("SELECT name FROM things WHERE at > :t ORDER BY at", {"t": base})
    assert [row["name"] for row in later] == ["b", "d"]


async def test_named_parameters_leave_literals_alone(things: Database) -> None:
    await things.execute(INSERT, thing("50% off", n=7))
    row = await things.fetch_one(
        "SELECT name, n, :n AS again, 'it''s :not_a_param 100%' AS text FROM things "
        "WHERE name LIKE '50%' AND n = :n",
        {"n": 7, "unused": "ignored"},
    )
    assert row == {"name": "50% off", "n": 7, "again": 7, "text": "it's :not_a_param 100%"}
    changed = await things.execute(
        "UPDATE things SET n = n + :step WHERE n = :n", {"step": 1, "n": 7}
    )
    assert changed == 1
    with pytest.raises(DatabaseError, match="missing"):
        await things.fetch_one("SELECT :missing AS m", {"other": 1})


async def test_postgres_casts_and_percent_signs(postgres_url: str, tmp_path: Path) -> None:
    db = open_database(postgres_url, base_dir=tmp_path)
    await db.connect()
    try:
        row = await db.fetch_one(
            "SELECT :n::text AS n, '5'::int % 3 AS modulo, format('%s%%', :n::text) AS pct, "
            "'{\"a\": 1}'::jsonb AS doc, $$ :x % $$ AS dollar -- :comment %\n",
            {"n": 42},
        )
        assert row == {"n": "42", "modulo": 2, "pct": "42%", "doc": {"a": 1}, "dollar": " :x % "}
    finally:
        await db.close()


async def test_a_transaction_commits_when_the_block_succeeds(things: Database) -> None:
    async with things.transaction() as tx:
        await tx.execute(INSERT, thing("one"))
        await tx.execute(INSERT, thing("two"))
        assert await tx.fetch_val("SELECT count(*) FROM things") == 2
    assert await things.fetch_val("SELECT count(*) FROM things") == 2


async def test_an_exception_rolls_the_whole_transaction_back(things: Database) -> None:
    class Boom(Exception):
        pass

    with pytest.raises(Boom):
        async with things.transaction() as tx:
            await tx.execute(INSERT, thing("one"))
            await tx.execute("UPDATE things SET n = 5")
            raise Boom
    assert await things.fetch_val("SELECT count(*) FROM things") == 0
    with pytest.raises(DatabaseError, match="ended"):
        await tx.execute(INSERT, thing("late"))


async def test_concurrent_read_modify_write_transactions_lose_nothing(things: Database) -> None:
    await things.execute("INSERT INTO counters (name, n) VALUES ('hits', 0)")

    async def increment() -> None:
        async with things.transaction() as tx:
            # UPDATE … RETURNING locks the row on PostgreSQL; SQLite serialises writers.
            n = await tx.fetch_val("UPDATE counters SET n = n WHERE name = 'hits' RETURNING n")
            await tx.fetch_all("SELECT * FROM things")  # let other coroutines run in between
            await tx.execute("UPDATE counters SET n = :n WHERE name = 'hits'", {"n": n + 1})

    await asyncio.gather(*(increment() for _ in range(50)))
    assert await things.fetch_val("SELECT n FROM counters WHERE name = 'hits'") == 50


async def test_a_failing_transaction_does_not_undo_concurrent_ones(things: Database) -> None:
    async def work(i: int) -> None:
        async with things.transaction() as tx:
            await tx.execute(INSERT, thing(f"{i}-a"))
            await tx.fetch_val("SELECT count(*) FROM things")
            await tx.execute(INSERT, thing(f"{i}-b"))
            if i % 2:
                raise RuntimeError(f"task {i} fails")

    results = await asyncio.gather(*(work(i) for i in range(30)), return_exceptions=True)
    assert [i for i, result in enumerate(results) if result is not None] == list(range(1, 30, 2))
    names = {row["name"] for row in await things.fetch_all("SELECT name FROM things")}
    assert names == {f"{i}-{part}" for i in range(0, 30, 2) for part in "ab"}


async def test_a_cancelled_transaction_is_rolled_back(things: Database) -> None:
    inside = asyncio.Event()

    async def interrupted() -> None:
        async with things.transaction() as tx:
            await tx.execute(INSERT, thing("half done"))
            inside.set()
            await asyncio.Event().wait()  # e.g. the client went away

    task = asyncio.create_task(interrupted())
    await inside.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert await things.fetch_val("SELECT count(*) FROM things") == 0
    async with things.transaction() as tx:
        await tx.execute(INSERT, thing("next"))
    assert await things.fetch_val("SELECT name FROM things") == "next"


async def test_a_script_is_all_or_nothing(things: Database) -> None:
    with pytest.raises(DatabaseError, match="no_such_table"):
        await things.execute_script(
            "CREATE TABLE extra (id INTEGER);\n"
            "INSERT INTO things (name) VALUES ('from script');\n"
            "INSERT INTO no_such_table (id) VALUES (1);\n"
        )
    assert await things.fetch_val("SELECT count(*) FROM things") == 0
    with pytest.raises(DatabaseError):
        await things.fetch_val("SELECT count(*) FROM extra")


async def test_execute_many_is_all_or_nothing(things: Database) -> None:
    rows = [thing("x", n=1), thing("y", n=2), thing("x", n=3)]
    with pytest.raises(IntegrityError):
        await things.execute_many(INSERT.removesuffix(" RETURNING id"), rows)
    assert await things.fetch_val("SELECT count(*) FROM things") == 0
    await things.execute_many(INSERT.removesuffix(" RETURNING id"), rows[:2])
    assert await things.fetch_val("SELECT sum(n) FROM things") == 3


async def test_using_the_database_inside_its_own_transaction_is_an_error(things: Database) -> None:
    async with things.transaction() as tx:
        await tx.execute(INSERT, thing("inside"))
        with pytest.raises(DatabaseError, match="use the connection yielded by transaction"):
            await things.execute(INSERT, thing("outside"))
    assert await things.fetch_val("SELECT name FROM things") == "inside"


async def test_errors_name_the_operation_and_chain_the_driver_error(things: Database) -> None:
    with pytest.raises(DatabaseError, match="fetch_all failed") as caught:
        await things.fetch_all("SELECT * FROM no_such_table")
    assert "no_such_table" in str(caught.value)
    assert caught.value.__cause__ is not None


async def test_ping_and_close(raw_db: Database) -> None:
    await raw_db.ping()
    await raw_db.close()
    await raw_db.close()
    with pytest.raises(DatabaseError, match="closed"):
        await raw_db.fetch_val("SELECT 1")
    with pytest.raises(DatabaseError, match="closed"):
        await raw_db.ping()


async def test_close_waits_for_a_transaction_in_flight(
    things: Database, database_url: str, tmp_path: Path
) -> None:
    inside = asyncio.Event()
    release = asyncio.Event()

    async def slow_transaction() -> None:
        async with things.transaction() as tx:
            await tx.execute(INSERT, thing("kept"))
            inside.set()
            await release.wait()
            await tx.execute(INSERT, thing("after close() was called"))

    task = asyncio.create_task(slow_transaction())
    await inside.wait()
    closing = asyncio.create_task(things.close())
    release.set()
    await task
    await closing
    with pytest.raises(DatabaseError, match="closed"):
        await things.fetch_val("SELECT 1")

    reopened = open_database(database_url, base_dir=tmp_path)
    await reopened.connect()
    try:
        assert await reopened.fetch_val("SELECT count(*) FROM things") == 2
    finally:
        await reopened.close()
