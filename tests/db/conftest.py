"""Fixtures giving each test a connected database on both backends (`database_url` in
tests/conftest.py chooses SQLite or a fresh PostgreSQL database)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from medianest_server.db import (
    CORE_MIGRATIONS,
    Database,
    apply_migrations,
    load_migrations,
    open_database,
)


@pytest.fixture
async def raw_db(database_url: str, tmp_path: Path) -> AsyncIterator[Database]:
    """A connected Database with no tables, on each backend."""
    db = open_database(database_url, base_dir=tmp_path)
    await db.connect()
    try:
        yield db
    finally:
        await db.close()


@pytest.fixture
async def db(raw_db: Database) -> Database:
    """A connected Database with the core schema, on each backend."""
    await apply_migrations(raw_db, load_migrations("core", CORE_MIGRATIONS, raw_db.dialect))
    return raw_db
