"""Schema migrations: numbered SQL files per component, applied once, recorded with a checksum.

A component (``core``, or a plugin) keeps its files in one folder::

    0001_initial.sql            the same SQL for both databases, or
    0001_initial.sqlite.sql     for SQLite only, and
    0001_initial.postgres.sql   for PostgreSQL only

Each migration runs in one transaction with its ``schema_migrations`` row, so a failing file
leaves nothing behind. Changing a file after it was applied is an error, not a silent skip.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections import defaultdict
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

from .base import Connection, Database, DatabaseError, MigrationError

logger = logging.getLogger(__name__)

_FILE_NAME = re.compile(
    r"^(?P<version>\d{4,})_(?P<what>[A-Za-z0-9_]+)(?:\.(?P<dialect>[a-z]+))?\.sql$"
)
_SUFFIX_DIALECT = {"sqlite": "sqlite", "postgres": "postgresql"}

#: pg_advisory_xact_lock key serialising migrations across instances ("MNMIGRAT" in ASCII).
PG_LOCK_KEY = 0x4D4E4D4947524154

_TABLE_SQL = {
    "sqlite": """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            component TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at TIMESTAMP NOT NULL,
            PRIMARY KEY (component, version)
        )""",
    "postgresql": """
        CREATE TABLE IF NOT EXISTS schema_migrations (
            component TEXT NOT NULL,
            version INTEGER NOT NULL,
            name TEXT NOT NULL,
            checksum TEXT NOT NULL,
            applied_at TIMESTAMPTZ NOT NULL,
            PRIMARY KEY (component, version)
        )""",
}

_TABLE_EXISTS_SQL = {
    "sqlite": "SELECT count(*) FROM sqlite_master WHERE type = 'table' "
    "AND name = 'schema_migrations'",
    "postgresql": "SELECT count(*) FROM pg_catalog.pg_tables "
    "WHERE tablename = 'schema_migrations' AND schemaname = ANY (current_schemas(false))",
}


@dataclass(frozen=True)
class Migration:
    """One migration file as it applies to one database dialect."""

    component: str
    version: int
    name: str  # the file name, e.g. "0001_initial.sqlite.sql"
    sql: str
    checksum: str  # SHA-256 hex of ``sql``

    def describe(self) -> str:
        return f"{self.component} migration {self.name}"


def load_migrations(component: str, folder: Path, dialect: str) -> list[Migration]:
    """Read ``folder``'s ``NNNN_<what>.sql`` files for ``dialect`` ("sqlite" or "postgresql").

    A ``.sqlite.sql`` / ``.postgres.sql`` file replaces the generic file of the same version for
    that dialect. Raises :class:`MigrationError` for a badly named file, two files with the same
    version, or a dialect-specific file that has no counterpart for the other dialect.
    """
    if dialect not in _SUFFIX_DIALECT.values():
        raise ValueError(f"unknown dialect {dialect!r}; expected 'sqlite' or 'postgresql'")
    if not folder.is_dir():
        raise MigrationError(f"{component} migrations folder {folder} does not exist")

    # version -> target ("any", "sqlite", "postgresql") -> file names
    by_version: dict[int, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    for path in sorted(folder.iterdir()):
        if not path.name.endswith(".sql"):
            continue
        match = _FILE_NAME.match(path.name)
        suffix = match.group("dialect") if match else None
        if match is None or (suffix is not None and suffix not in _SUFFIX_DIALECT):
            raise MigrationError(
                f"{component} migration file name {path.name!r} is not NNNN_<what>.sql, "
                "NNNN_<what>.sqlite.sql or NNNN_<what>.postgres.sql"
            )
        target = _SUFFIX_DIALECT[suffix] if suffix else "any"
        by_version[int(match.group("version"))][target].append(path.name)

    migrations: list[Migration] = []
    for version in sorted(by_version):
        targets = by_version[version]
        _check_version_files(component, targets)
        chosen = (targets.get(dialect) or targets["any"])[0]
        sql = (folder / chosen).read_text(encoding="utf-8")
        checksum = hashlib.sha256(sql.encode("utf-8")).hexdigest()
        migrations.append(Migration(component, version, chosen, sql, checksum))
    return migrations


def _check_version_files(component: str, targets: dict[str, list[str]]) -> None:
    names = [name for files in targets.values() for name in files]
    stems = {name.split(".", 1)[0] for name in names}
    if any(len(files) > 1 for files in targets.values()) or len(stems) > 1:
        raise MigrationError(
            f"{component} migrations {' and '.join(names)} have the same version number; "
            "renumber one of them"
        )
    if not targets.get("any"):
        for dialect, other in (("sqlite", "postgresql"), ("postgresql", "sqlite")):
            if targets.get(dialect) and not targets.get(other):
                name = targets[dialect][0]
                raise MigrationError(
                    f"{component} migration {name} has no {other} counterpart; add "
                    f"{name.split('.', 1)[0]}.{'postgres' if other == 'postgresql' else other}.sql"
                    f" or a generic {name.split('.', 1)[0]}.sql"
                )


async def _applied(db: Connection, dialect: str) -> dict[tuple[str, int], str]:
    """(component, version) -> checksum of every applied migration; one SELECT normally."""
    try:
        rows = await db.fetch_all("SELECT component, version, checksum FROM schema_migrations")
    except DatabaseError:
        if await db.fetch_val(_TABLE_EXISTS_SQL[dialect]):
            raise
        return {}  # a new database
    return {(row["component"], int(row["version"])): row["checksum"] for row in rows}


def _check_unchanged(migration: Migration, applied_checksum: str) -> None:
    if applied_checksum != migration.checksum:
        raise MigrationError(
            f"{migration.describe()} was changed after it was applied "
            f"(checksum {applied_checksum[:12]}≠{migration.checksum[:12]}); "
            "restore the file or restore the database from a backup"
        )


async def pending_migrations(db: Database, migrations: list[Migration]) -> list[Migration]:
    """The migrations not yet applied, in order.

    Raises :class:`MigrationError` if an applied migration's file has changed since. Cheap (one
    SELECT), so a health check can call it.
    """
    applied = await _applied(db, db.dialect)
    pending: list[Migration] = []
    for migration in migrations:
        checksum = applied.get((migration.component, migration.version))
        if checksum is None:
            pending.append(migration)
        else:
            _check_unchanged(migration, checksum)
    return pending


async def apply_migrations(db: Database, migrations: list[Migration]) -> list[Migration]:
    """Apply the pending migrations in order; return those applied by this call.

    Each runs in its own transaction together with its ``schema_migrations`` row. On PostgreSQL
    an advisory lock makes concurrent starts apply each migration once; on SQLite BEGIN
    IMMEDIATE does the same.
    """
    applied_now: list[Migration] = []
    for migration in await pending_migrations(db, migrations):
        async with db.transaction() as conn:
            if db.dialect == "postgresql":
                # As a script: waiting for another instance's migration may take a while.
                await conn.execute_script(f"SELECT pg_advisory_xact_lock({PG_LOCK_KEY})")
            await conn.execute(_TABLE_SQL[db.dialect])
            checksum = await conn.fetch_val(
                "SELECT checksum FROM schema_migrations WHERE component = :component "
                "AND version = :version",
                {"component": migration.component, "version": migration.version},
            )
            if checksum is not None:  # another instance applied it meanwhile
                _check_unchanged(migration, checksum)
                continue
            try:
                await conn.execute_script(migration.sql)
            except DatabaseError as exc:
                raise MigrationError(f"{migration.describe()} failed: {exc}") from exc
            await conn.execute(
                "INSERT INTO schema_migrations (component, version, name, checksum, applied_at) "
                "VALUES (:component, :version, :name, :checksum, :applied_at)",
                {
                    "component": migration.component,
                    "version": migration.version,
                    "name": migration.name,
                    "checksum": migration.checksum,
                    "applied_at": datetime.now(UTC),
                },
            )
        logger.debug(
            "migration applied",
            extra={"component": migration.component, "migration": migration.name},
        )
        applied_now.append(migration)
    return applied_now
