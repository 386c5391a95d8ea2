"""Storage: the :class:`Database` interface, its SQLite and PostgreSQL backends, migrations.

Open a database with :func:`open_database`, connect it, apply the migrations::

    db = open_database(config.database.url, base_dir=data_dir)
    await db.connect()
    await apply_migrations(db, load_migrations("core", CORE_MIGRATIONS, db.dialect))
"""

from pathlib import Path

from .backup import backup_sqlite
from .base import (
    Connection,
    Database,
    DatabaseError,
    IntegrityError,
    MigrationError,
    Row,
    UnknownDatabaseURL,
)
from .migrations import Migration, apply_migrations, load_migrations, pending_migrations
from .urls import open_database

#: The folder of the core's migration files.
CORE_MIGRATIONS: Path = Path(__file__).parent / "migrations" / "core"

__all__ = [
    "CORE_MIGRATIONS",
    "Connection",
    "Database",
    "DatabaseError",
    "IntegrityError",
    "Migration",
    "MigrationError",
    "Row",
    "UnknownDatabaseURL",
    "apply_migrations",
    "backup_sqlite",
    "load_migrations",
    "open_database",
    "pending_migrations",
]
