"""Consistent copies of a live SQLite database (``medianest backup``)."""

from __future__ import annotations

import asyncio
import contextlib
import os
import secrets
import sqlite3
from pathlib import Path

from .base import DatabaseError


async def backup_sqlite(db_path: Path, dest: Path) -> None:
    """Copy the SQLite database at ``db_path`` to ``dest`` while the server keeps running.

    Uses SQLite's online backup API, so the copy is one consistent snapshot that holds every
    transaction committed before it started, and writers are not blocked (WAL). The copy is
    written next to ``dest``, checked with ``PRAGMA integrity_check`` and only then moved into
    place: ``dest`` is never half written. Raises ``FileExistsError`` if ``dest`` exists,
    ``FileNotFoundError`` if ``db_path`` does not, :class:`DatabaseError` if the copy fails.
    """
    await asyncio.to_thread(_backup, Path(db_path), Path(dest))


def _backup(db_path: Path, dest: Path) -> None:
    if dest.exists():
        raise FileExistsError(
            f"backup destination {dest} already exists; choose a new file name or remove it"
        )
    if not db_path.is_file():
        raise FileNotFoundError(f"no SQLite database at {db_path}")
    dest.parent.mkdir(parents=True, exist_ok=True)
    temp = dest.with_name(f".{dest.name}.{secrets.token_hex(4)}.partial")
    try:
        _copy(db_path, temp)
        _publish(temp, dest)
    finally:
        for leftover in (temp, temp.with_name(temp.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                leftover.unlink()


def _copy(db_path: Path, temp: Path) -> None:
    try:
        # mode=ro: a missing or mistyped path must not create an empty database.
        source = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            # The copy holds password hashes and session ids: readable by its owner only.
            os.close(os.open(temp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            target = sqlite3.connect(temp, isolation_level=None)
            try:
                source.backup(target)  # all pages in one step: one snapshot
                # A self-contained file: no -wal/-shm companions to copy along.
                target.execute("PRAGMA journal_mode = DELETE")
                problems = [row[0] for row in target.execute("PRAGMA integrity_check")]
            finally:
                target.close()
        finally:
            source.close()
    except sqlite3.Error as exc:
        raise DatabaseError(f"backup of {db_path} failed: {exc}") from exc
    if problems != ["ok"]:
        raise DatabaseError(
            f"backup of {db_path} failed the integrity check: {'; '.join(problems[:5])}"
        )
    with open(temp, "rb") as written:
        os.fsync(written.fileno())


def _publish(temp: Path, dest: Path) -> None:
    """Move the finished copy to ``dest`` without ever replacing an existing file."""
    try:
        os.link(temp, dest)  # atomic and fails if dest appeared meanwhile
    except FileExistsError:
        raise FileExistsError(
            f"backup destination {dest} already exists; choose a new file name or remove it"
        ) from None
    except OSError:
        # A file system without hard links: re-check, then rename.
        if dest.exists():
            raise FileExistsError(
                f"backup destination {dest} already exists; choose a new file name or remove it"
            ) from None
        os.replace(temp, dest)
    directory = os.open(dest.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)
