"""``[database] url`` handling: where the SQLite file goes, what errors say, what is hidden."""

from __future__ import annotations

import asyncio
import stat
import time
from pathlib import Path

import pytest

from medianest_server.db import DatabaseError, UnknownDatabaseURL, open_database


async def test_a_relative_sqlite_path_is_under_the_data_directory(tmp_path: Path) -> None:
    db = open_database("sqlite:///state/medianest.db", base_dir=tmp_path)
    assert db.dialect == "sqlite"
    assert db.url_for_display == "sqlite:///state/medianest.db"
    assert not (tmp_path / "state").exists()  # nothing happens before connect()
    await db.connect()
    try:
        await db.execute("CREATE TABLE t (id INTEGER)")
    finally:
        await db.close()
    path = tmp_path / "state" / "medianest.db"
    assert path.is_file()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


async def test_an_absolute_sqlite_path_has_four_slashes(tmp_path: Path) -> None:
    target = tmp_path / "abs" / "x.db"
    db = open_database(f"sqlite:///{target}", base_dir=tmp_path / "elsewhere")
    await db.connect()
    try:
        assert await db.fetch_val("PRAGMA journal_mode") == "wal"
        assert await db.fetch_val("PRAGMA foreign_keys") == 1
    finally:
        await db.close()
    assert target.is_file()
    assert not (tmp_path / "elsewhere").exists()


async def test_an_in_memory_database_keeps_its_tables(tmp_path: Path) -> None:
    db = open_database("sqlite:///:memory:", base_dir=tmp_path)
    await db.connect()
    try:
        await db.execute("CREATE TABLE t (id INTEGER)")
        await db.execute("INSERT INTO t (id) VALUES (1)")
        assert await db.fetch_val("SELECT count(*) FROM t") == 1
    finally:
        await db.close()


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("mysql://root:hunter2@db.example/medianest", "mysql"),
        ("medianest.db", ""),
        ("redis://:hunter2@127.0.0.1:6379/0", "redis"),
    ],
)
def test_an_unknown_scheme_is_named_and_the_password_hidden(url: str, scheme: str) -> None:
    with pytest.raises(UnknownDatabaseURL) as caught:
        open_database(url, base_dir=Path("."))
    message = str(caught.value)
    assert message.startswith(f"unknown database URL scheme {scheme!r} in ")
    assert "expected sqlite:///PATH or postgresql://" in message
    assert "hunter2" not in message


@pytest.mark.parametrize("url", ["sqlite://host/x.db", "sqlite:///", "sqlite:///x.db?mode=ro"])
def test_a_malformed_sqlite_url_is_refused(url: str) -> None:
    with pytest.raises(UnknownDatabaseURL, match="SQLite URL"):
        open_database(url, base_dir=Path("."))


@pytest.mark.parametrize("scheme", ["postgresql", "postgres"])
def test_postgres_urls_display_without_the_password(scheme: str) -> None:
    db = open_database(f"{scheme}://medianest:p%40ss@127.0.0.1:5432/medianest", base_dir=Path("."))
    assert db.dialect == "postgresql"
    assert db.url_for_display == f"{scheme}://medianest:***@127.0.0.1:5432/medianest"
    assert "p%40ss" not in repr(db)
    db = open_database(f"{scheme}://127.0.0.1/medianest?password=secret", base_dir=Path("."))
    assert db.url_for_display == f"{scheme}://127.0.0.1/medianest?password=***"


async def test_an_unreachable_postgres_fails_fast_without_the_password() -> None:
    db = open_database("postgresql://medianest:s3cret@127.0.0.1:1/medianest", base_dir=Path("."))
    started = time.monotonic()
    async with asyncio.timeout(20):
        with pytest.raises(DatabaseError) as caught:
            await db.connect()
    assert time.monotonic() - started < 15
    message = str(caught.value)
    assert message.startswith("could not connect to PostgreSQL at ")
    assert "127.0.0.1:1" in message
    assert "s3cret" not in message
    with pytest.raises(DatabaseError, match="before connect"):
        await db.ping()
    await db.close()
