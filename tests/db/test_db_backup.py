"""``backup_sqlite``: a consistent copy of a live database, never a half-written file."""

from __future__ import annotations

import asyncio
import sqlite3
import stat
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medianest_server.db import Database, backup_sqlite, open_database


@pytest.fixture
async def live(tmp_path: Path) -> AsyncIterator[Database]:
    db = open_database("sqlite:///live.db", base_dir=tmp_path)
    await db.connect()
    await db.execute("CREATE TABLE events (id INTEGER PRIMARY KEY, payload TEXT NOT NULL)")
    await db.execute_many(
        "INSERT INTO events (payload) VALUES (:payload)",
        [{"payload": f"event {i} " + "x" * 500} for i in range(500)],
    )
    try:
        yield db
    finally:
        await db.close()


def hidden_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def read_copy(path: Path) -> tuple[str, list[int], str]:
    conn = sqlite3.connect(path)
    try:
        check = conn.execute("PRAGMA integrity_check").fetchone()[0]
        ids = [row[0] for row in conn.execute("SELECT id FROM events ORDER BY id")]
        journal = conn.execute("PRAGMA journal_mode").fetchone()[0]
    finally:
        conn.close()
    return check, ids, journal


async def test_a_backup_taken_during_writes_is_consistent(live: Database, tmp_path: Path) -> None:
    writing = asyncio.Event()
    stop = asyncio.Event()

    async def keep_writing() -> int:
        written = 0
        while not stop.is_set():
            async with live.transaction() as tx:
                await tx.execute("INSERT INTO events (payload) VALUES ('during')")
                await tx.execute("UPDATE events SET payload = payload || '!' WHERE id = 1")
            written += 1
            writing.set()
        return written

    writer = asyncio.create_task(keep_writing())
    await writing.wait()
    committed = await live.fetch_val("SELECT max(id) FROM events")
    dest = tmp_path / "backups" / "medianest-2024-06-01.db"
    try:
        await backup_sqlite(tmp_path / "live.db", dest)
    finally:
        stop.set()
        written = await writer
    assert written >= 1

    check, ids, journal = read_copy(dest)
    assert check == "ok"
    assert journal == "delete"  # a self-contained file, no -wal needed
    assert ids[:committed] == list(range(1, committed + 1))
    assert ids == list(range(1, len(ids) + 1))  # a snapshot: no gaps
    assert stat.S_IMODE(dest.stat().st_mode) == 0o600
    assert sorted(p.name for p in dest.parent.iterdir()) == [dest.name]


async def test_a_backup_never_overwrites(live: Database, tmp_path: Path) -> None:
    dest = tmp_path / "keep.db"
    dest.write_text("an older backup")
    with pytest.raises(FileExistsError, match="already exists"):
        await backup_sqlite(tmp_path / "live.db", dest)
    assert dest.read_text() == "an older backup"
    assert hidden_files(tmp_path) == []  # no temporary copy left behind


async def test_a_missing_database_is_not_created(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="no SQLite database"):
        await backup_sqlite(tmp_path / "typo.db", tmp_path / "out.db")
    assert not (tmp_path / "typo.db").exists()
    assert not (tmp_path / "out.db").exists()
