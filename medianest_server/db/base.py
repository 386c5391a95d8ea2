"""The database interface shared by the SQLite and PostgreSQL backends.

A store is written once against :class:`Database` / :class:`Connection` and runs on both
backends. SQL uses named parameters (``:name``); values are plain Python (see
:func:`adapt_value`); rows come back as plain ``dict`` objects keyed by column name.
"""

from __future__ import annotations

import asyncio
import functools
import json
import re
from abc import ABC, abstractmethod
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any, Literal

Row = dict[str, Any]
Dialect = Literal["sqlite", "postgresql"]


class DatabaseError(Exception):
    """Base of every error raised by ``medianest_server.db``."""


class IntegrityError(DatabaseError):
    """A constraint was violated (unique, foreign key, check, not null)."""


class UnknownDatabaseURL(DatabaseError):
    """The ``[database] url`` is not ``sqlite:///PATH`` or ``postgresql://…``."""


class MigrationError(DatabaseError):
    """A migration file is malformed, was changed after it was applied, or failed."""


class Connection(ABC):
    """What a transaction hands you; :class:`Database` has the same methods.

    SQL takes named parameters written ``:name`` and a mapping of values. Accepted values:
    timezone-aware ``datetime`` (naive ones raise ``ValueError``), ``dict``/``list`` (stored as
    JSON), ``bool``, ``int``, ``float``, ``str``, ``bytes`` and ``None``. To store a JSON scalar in
    a JSON column pass ``json.dumps(value)``.

    Columns declared ``TIMESTAMP`` (SQLite) / ``TIMESTAMPTZ`` (PostgreSQL) come back as UTC
    ``datetime``; ``JSON`` / ``JSONB`` columns as ``dict``/``list``; ``BOOLEAN`` as ``bool``.
    On SQLite only plain column references carry their declared type: an expression such as
    ``max(created_at)`` comes back as the stored text.
    """

    @abstractmethod
    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        """Run one statement; return the number of rows it changed (-1 when not applicable)."""

    @abstractmethod
    async def execute_many(self, sql: str, params_seq: Iterable[Mapping[str, Any]]) -> None:
        """Run one statement once per parameter mapping, all or nothing."""

    @abstractmethod
    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        """Return the first row of the result, or ``None`` when there is none."""

    @abstractmethod
    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        """Return every row of the result."""

    @abstractmethod
    async def fetch_val(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        """Return the first column of the first row, or ``None``.

        Use it for ``INSERT … RETURNING id``, which works on both backends.
        """

    @abstractmethod
    async def execute_script(self, sql: str) -> None:
        """Run several ``;``-separated statements without parameters, all or nothing.

        Meant for migrations; the script must not contain ``BEGIN``/``COMMIT``.
        """


class Database(Connection):
    """A connection pool to one database. Open it with :func:`open_database`.

    Inside ``async with db.transaction() as conn`` use ``conn``: calling ``db`` itself from the
    task that holds the transaction raises :class:`DatabaseError` (on SQLite it would deadlock).

    On SQLite write transactions run one at a time. On PostgreSQL they run concurrently at READ
    COMMITTED, so a read-modify-write must lock what it reads: start it with
    ``UPDATE … RETURNING`` (portable) rather than a plain ``SELECT``.
    """

    dialect: Dialect
    url_for_display: str

    def __init__(self) -> None:
        self._tx_tasks: set[asyncio.Task[Any]] = set()

    @abstractmethod
    async def connect(self) -> None:
        """Open the connections; raises :class:`DatabaseError` if the database is unreachable."""

    @abstractmethod
    async def close(self) -> None:
        """Wait for operations in flight, then close every connection. Safe to call twice."""

    @abstractmethod
    def transaction(self) -> AbstractAsyncContextManager[Connection]:
        """Commit when the block succeeds, roll back when it raises. Not nestable."""

    @abstractmethod
    async def ping(self) -> None:
        """Run ``SELECT 1``; raises :class:`DatabaseError` if the database does not answer."""

    def _enter_transaction(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tx_tasks.add(task)

    def _leave_transaction(self) -> None:
        task = asyncio.current_task()
        if task is not None:
            self._tx_tasks.discard(task)

    def _guard(self, operation: str) -> None:
        """Refuse to use the Database from the task that holds one of its transactions."""
        if self._tx_tasks and asyncio.current_task() in self._tx_tasks:
            raise DatabaseError(
                f"{operation} called on the Database inside one of its transactions; "
                "use the connection yielded by transaction() instead"
            )

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.url_for_display}>"


# -- values ----------------------------------------------------------------------------------


def require_aware(value: datetime) -> datetime:
    """Return ``value`` unchanged, or raise ``ValueError`` if it has no timezone."""
    if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
        raise ValueError(
            f"naive datetime {value.isoformat()} passed to the database; "
            "use a timezone-aware datetime (datetime.now(UTC))"
        )
    return value


def format_timestamp(value: datetime) -> str:
    """UTC, always with microseconds: '2024-05-01T12:00:00.000000+00:00'."""
    return require_aware(value).astimezone(UTC).isoformat(timespec="microseconds")


def parse_timestamp(text: str) -> datetime:
    """Read a stored timestamp; text without an offset (CURRENT_TIMESTAMP) is taken as UTC."""
    value = datetime.fromisoformat(text)
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def dump_json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


# -- SQL -------------------------------------------------------------------------------------

_PG_TOKENS = re.compile(
    r"""
      (?P<estring>(?<![A-Za-z0-9_])[Ee]'(?:[^'\\]|\\.|'')*')
    | (?P<string>'(?:[^']|'')*')
    | (?P<ident>"(?:[^"]|"")*")
    | (?P<line_comment>--[^\n]*)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<dollar>\$(?P<tag>(?:[A-Za-z_][A-Za-z0-9_]*)?)\$.*?\$(?P=tag)\$)
    | (?P<cast>::)
    | :(?P<param>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<percent>%)
    """,
    re.VERBOSE | re.DOTALL,
)


@functools.lru_cache(maxsize=1024)
def to_pyformat(sql: str) -> tuple[str, frozenset[str]]:
    """Convert ``:name`` parameters to psycopg2's ``%(name)s``.

    ``::type`` casts, quoted strings and identifiers, comments and dollar-quoted bodies are kept
    as they are; every literal ``%`` becomes ``%%``. Returns the SQL and the parameter names.
    """
    names: set[str] = set()

    def replace(match: re.Match[str]) -> str:
        name = match.group("param")
        if name is not None:
            names.add(name)
            return f"%({name})s"
        return match.group(0).replace("%", "%%")

    return _PG_TOKENS.sub(replace, sql), frozenset(names)


_SQL_HEAD = re.compile(r"\A(?:\s+|--[^\n]*(?:\n|\Z)|/\*.*?\*/)*([A-Za-z]+)", re.DOTALL)


@functools.lru_cache(maxsize=1024)
def first_keyword(sql: str) -> str:
    """The first keyword of a statement, upper case ('' if none): SELECT, INSERT, WITH, …"""
    match = _SQL_HEAD.match(sql)
    return match.group(1).upper() if match else ""


def describe_sql(sql: str, limit: int = 120) -> str:
    """One line of SQL for an error message."""
    text = " ".join(sql.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
