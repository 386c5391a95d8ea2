"""The migration runner: applied once, recorded, changes detected, failures leave nothing."""

from __future__ import annotations

import asyncio
import hashlib
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from medianest_server.db import (
    CORE_MIGRATIONS,
    Database,
    DatabaseError,
    MigrationError,
    apply_migrations,
    load_migrations,
    open_database,
    pending_migrations,
)


def write(folder: Path, files: dict[str, str]) -> Path:
    folder.mkdir(exist_ok=True)
    for name, sql in files.items():
        (folder / name).write_text(sql, encoding="utf-8")
    return folder


async def table_exists(db: Database, table: str) -> bool:
    try:
        await db.fetch_val(f"SELECT count(*) FROM {table}")
    except DatabaseError:
        return False
    return True


async def test_core_migrations_are_applied_once_and_recorded(raw_db: Database) -> None:
    migrations = load_migrations("core", CORE_MIGRATIONS, raw_db.dialect)
    suffix = "sqlite" if raw_db.dialect == "sqlite" else "postgres"
    assert [m.name for m in migrations][:2] == [
        f"0001_initial.{suffix}.sql",
        "0002_jobs_claim_index.sql",
    ]
    assert await pending_migrations(raw_db, migrations) == migrations

    before = datetime.now(UTC)
    assert await apply_migrations(raw_db, migrations) == migrations
    rows = await raw_db.fetch_all("SELECT * FROM schema_migrations ORDER BY version")
    assert len(rows) == len(migrations)
    row = rows[0]
    assert (row["component"], row["version"], row["name"]) == ("core", 1, migrations[0].name)
    sql = (CORE_MIGRATIONS / migrations[0].name).read_text(encoding="utf-8")
    assert row["checksum"] == hashlib.sha256(sql.encode()).hexdigest()
    assert before - timedelta(seconds=1) <= row["applied_at"] <= datetime.now(UTC)

    assert await apply_migrations(raw_db, migrations) == []
    assert await pending_migrations(raw_db, migrations) == []
    assert await raw_db.fetch_val("SELECT count(*) FROM schema_migrations") == len(migrations)


async def test_a_changed_applied_migration_is_an_error(raw_db: Database, tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {"0001_things.sql": "CREATE TABLE things (id INTEGER);\n"})
    await apply_migrations(raw_db, load_migrations("shelf", folder, raw_db.dialect))
    write(folder, {"0001_things.sql": "CREATE TABLE things (id INTEGER, name TEXT);\n"})
    changed = load_migrations("shelf", folder, raw_db.dialect)

    message = (
        r"shelf migration 0001_things\.sql was changed after it was applied \(checksum "
        r"[0-9a-f]+≠[0-9a-f]+\); restore the file or restore the database from a backup"
    )
    with pytest.raises(MigrationError, match=message):
        await pending_migrations(raw_db, changed)
    with pytest.raises(MigrationError, match=message):
        await apply_migrations(raw_db, changed)


async def test_a_failing_migration_leaves_no_trace(raw_db: Database, tmp_path: Path) -> None:
    folder = write(
        tmp_path / "m",
        {
            "0001_good.sql": "CREATE TABLE good (id INTEGER);",
            "0002_bad.sql": (
                "-- a table, then a typo\n"
                "CREATE TABLE half (id INTEGER);\n"
                "INSERT INTO good (id) VALUES (1);\n"
                "SELEC 1;\n"
            ),
            "0003_never.sql": "CREATE TABLE never (id INTEGER);",
        },
    )
    migrations = load_migrations("shelf", folder, raw_db.dialect)
    with pytest.raises(MigrationError, match=r"shelf migration 0002_bad\.sql failed: .*SELEC"):
        await apply_migrations(raw_db, migrations)

    assert await table_exists(raw_db, "good")
    assert await raw_db.fetch_val("SELECT count(*) FROM good") == 0
    assert not await table_exists(raw_db, "half")
    assert not await table_exists(raw_db, "never")
    versions = await raw_db.fetch_all("SELECT version FROM schema_migrations")
    assert versions == [{"version": 1}]
    assert [m.name for m in await pending_migrations(raw_db, migrations)] == [
        "0002_bad.sql",
        "0003_never.sql",
    ]


async def test_a_dialect_specific_file_replaces_the_generic_one(
    raw_db: Database, tmp_path: Path
) -> None:
    folder = write(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (generic INTEGER);",
            "0001_t.sqlite.sql": "CREATE TABLE t (lite INTEGER);",
            "0001_t.postgres.sql": "CREATE TABLE t (pg BIGINT);",
            "0002_u.sql": "CREATE TABLE u (id INTEGER);",
            "README.md": "not a migration",
        },
    )
    migrations = load_migrations("shelf", folder, raw_db.dialect)
    specific = "0001_t.sqlite.sql" if raw_db.dialect == "sqlite" else "0001_t.postgres.sql"
    assert [(m.version, m.name) for m in migrations] == [(1, specific), (2, "0002_u.sql")]
    await apply_migrations(raw_db, migrations)
    column = "lite" if raw_db.dialect == "sqlite" else "pg"
    assert await raw_db.fetch_val(f"SELECT count({column}) FROM t") == 0


async def test_migrations_with_triggers_run_whole(raw_db: Database, tmp_path: Path) -> None:
    folder = write(
        tmp_path / "m",
        {
            "0001_counts.sql": "CREATE TABLE items (id INTEGER); CREATE TABLE counts (n INTEGER);"
            " INSERT INTO counts (n) VALUES (0);",
            "0002_trigger.sqlite.sql": """
                -- the ; inside BEGIN … END must not end the statement
                CREATE TRIGGER items_counted AFTER INSERT ON items
                BEGIN
                    UPDATE counts SET n = n + 1;
                END;
            """,
            "0002_trigger.postgres.sql": """
                CREATE FUNCTION items_counted() RETURNS trigger AS $body$
                BEGIN
                    UPDATE counts SET n = n + 1; -- 100% of the :rows
                    RETURN NEW;
                END;
                $body$ LANGUAGE plpgsql;
                CREATE TRIGGER items_counted AFTER INSERT ON items
                    FOR EACH ROW EXECUTE FUNCTION items_counted();
            """,
        },
    )
    await apply_migrations(raw_db, load_migrations("shelf", folder, raw_db.dialect))
    await raw_db.execute_many("INSERT INTO items (id) VALUES (:id)", [{"id": 1}, {"id": 2}])
    assert await raw_db.fetch_val("SELECT n FROM counts") == 2


async def test_concurrent_starts_apply_each_migration_once(
    database_url: str, tmp_path: Path
) -> None:
    folder = write(
        tmp_path / "m",
        {
            "0001_t.sql": "CREATE TABLE t (id INTEGER);",
            "0002_row.sql": "INSERT INTO t (id) VALUES (1);",
            "0003_more.sql": "INSERT INTO t (id) VALUES (2);",
        },
    )
    instances = [open_database(database_url, base_dir=tmp_path) for _ in range(3)]
    try:
        for instance in instances:
            await instance.connect()
        migrations = load_migrations("shelf", folder, instances[0].dialect)
        results = await asyncio.gather(*(apply_migrations(i, migrations) for i in instances))
        assert sorted(m.version for applied in results for m in applied) == [1, 2, 3]
        assert await instances[0].fetch_val("SELECT count(*) FROM t") == 2
        assert await instances[1].fetch_val("SELECT count(*) FROM schema_migrations") == 3
    finally:
        for instance in instances:
            await instance.close()


def test_two_files_with_one_version_are_rejected(tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {"0001_a.sql": "", "0001_b.sql": "", "0002_c.sql": ""})
    with pytest.raises(MigrationError, match=r"0001_a\.sql and 0001_b\.sql have the same version"):
        load_migrations("shelf", folder, "sqlite")


@pytest.mark.parametrize(
    "name", ["1_short.sql", "0001-dash.sql", "0001_x.mysql.sql", "0001_.sql", "initial.sql"]
)
def test_badly_named_files_are_rejected(tmp_path: Path, name: str) -> None:
    folder = write(tmp_path / "m", {name: "SELECT 1;"})
    with pytest.raises(MigrationError, match=f"shelf migration file name '{name}'"):
        load_migrations("shelf", folder, "postgresql")


def test_a_file_for_one_dialect_needs_its_counterpart(tmp_path: Path) -> None:
    folder = write(tmp_path / "m", {"0001_t.sqlite.sql": "CREATE TABLE t (id INTEGER);"})
    with pytest.raises(MigrationError, match=r"0001_t\.sqlite\.sql has no postgresql counterpart"):
        load_migrations("shelf", folder, "sqlite")


def test_a_missing_folder_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(MigrationError, match="does not exist"):
        load_migrations("shelf", tmp_path / "nowhere", "sqlite")
