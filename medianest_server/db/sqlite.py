"""SQLite backend (aiosqlite): one writer connection plus read connections, WAL journal.

Every write and every transaction goes through the writer, one at a time (an ``asyncio.Lock``
keeps two coroutines from interleaving statements in one transaction). ``SELECT`` statements
outside a transaction run on the read connections, which WAL lets proceed during writes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any, TypeVar

import aiosqlite

from .base import (
    Connection,
    Database,
    DatabaseError,
    Dialect,
    IntegrityError,
    Row,
    describe_sql,
    dump_json,
    first_keyword,
    format_timestamp,
    parse_timestamp,
)

logger = logging.getLogger(__name__)
# aiosqlite logs every statement with its parameters at DEBUG (password hashes, token
# digests): keep it quiet whatever the root level is
logging.getLogger("aiosqlite").setLevel(logging.INFO)


T = TypeVar("T")


def _convert_bool(raw: bytes) -> bool:
    return raw.strip().lower() not in (b"0", b"false", b"f", b"")


def _convert_json(raw: bytes) -> Any:
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise ValueError(
            "a column declared JSON holds text that is not JSON; "
            "to store a JSON string pass json.dumps(value)"
        ) from exc


# Converters are process-wide in sqlite3; they only apply to connections opened with
# PARSE_DECLTYPES, and these names only to columns declared with these types.
sqlite3.register_converter("TIMESTAMP", lambda raw: parse_timestamp(raw.decode()))
sqlite3.register_converter("JSON", _convert_json)
sqlite3.register_converter("BOOLEAN", _convert_bool)


def _dict_row(cursor: sqlite3.Cursor, values: tuple[Any, ...]) -> Row:
    return {column[0]: value for column, value in zip(cursor.description, values, strict=True)}


def adapt_value(value: Any) -> Any:
    """Turn a parameter value into what SQLite stores.

    Datetimes become fixed-width ISO 8601 text in UTC (so text order is time order), dicts and
    lists compact JSON text. Done here rather than with sqlite3.register_adapter, which would
    change every sqlite3 user in the process.
    """
    if isinstance(value, datetime):
        return format_timestamp(value)
    if isinstance(value, dict | list):
        return dump_json(value)
    return value


def _adapt(params: Mapping[str, Any] | None) -> dict[str, Any]:
    if params is None:
        return {}
    return {key: adapt_value(value) for key, value in params.items()}


def split_statements(script: str) -> list[str]:
    """Split a script into complete statements (triggers' inner ``;`` included correctly)."""
    statements: list[str] = []
    start = 0
    position = script.find(";")
    while position != -1:
        candidate = script[start : position + 1]
        if sqlite3.complete_statement(candidate):
            statements.append(candidate)
            start = position + 1
        position = script.find(";", position + 1)
    statements.append(script[start:])
    # Drop what is only whitespace and comments (e.g. the tail after the last statement).
    return [statement for statement in statements if first_keyword(statement)]


async def _wrap(operation: str, sql: str | None, awaitable: Awaitable[T]) -> T:
    """Await a driver call, re-raising sqlite3 errors as DatabaseError."""
    try:
        return await awaitable
    except sqlite3.Error as exc:
        where = f" ({describe_sql(sql)})" if sql else ""
        cls = IntegrityError if isinstance(exc, sqlite3.IntegrityError) else DatabaseError
        raise cls(f"SQLite {operation} failed: {exc}{where}") from exc


class _Session(Connection):
    """Statements on one aiosqlite connection, with no locking of its own.

    Also what ``transaction()`` hands out: unusable once the block has ended.
    """

    def __init__(self, conn: aiosqlite.Connection) -> None:
        self._conn = conn
        self.active = True

    def _live(self) -> aiosqlite.Connection:
        if not self.active:
            raise DatabaseError("this transaction has already ended")
        return self._conn

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        async def run() -> int:
            cursor = await self._live().execute(sql, _adapt(params))
            rowcount = cursor.rowcount
            await cursor.close()
            return rowcount

        return await _wrap("execute", sql, run())

    async def execute_many(self, sql: str, params_seq: Iterable[Mapping[str, Any]]) -> None:
        adapted = [_adapt(params) for params in params_seq]
        await _wrap("execute_many", sql, self._live().executemany(sql, adapted))

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return await self._first_row("fetch_one", sql, params)

    async def _first_row(
        self, operation: str, sql: str, params: Mapping[str, Any] | None
    ) -> Row | None:
        async def run() -> Row | None:
            cursor = await self._live().execute(sql, _adapt(params))
            row: Row | None = await cursor.fetchone()  # type: ignore[assignment]
            await cursor.close()
            return row

        return await _wrap(operation, sql, run())

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        query = self._live().execute_fetchall(sql, _adapt(params))
        return list(await _wrap("fetch_all", sql, query))  # type: ignore[arg-type]

    async def fetch_val(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        row = await self._first_row("fetch_val", sql, params)
        return None if row is None else next(iter(row.values()), None)

    async def execute_script(self, sql: str) -> None:
        statements = split_statements(sql)
        for number, statement in enumerate(statements, start=1):
            try:
                await _wrap("execute_script", None, self._live().execute(statement))
            except DatabaseError as exc:
                raise type(exc)(
                    f"{exc} (statement {number} of {len(statements)}: {describe_sql(statement)})"
                ) from exc.__cause__


class SQLiteDatabase(Database):
    """A SQLite file (or ``:memory:``, which uses the writer only) behind the Database API."""

    dialect: Dialect = "sqlite"

    def __init__(
        self,
        path: Path | str,
        *,
        url_for_display: str,
        pool_size: int = 5,
        busy_timeout_ms: int = 5000,
    ) -> None:
        super().__init__()
        self.path = path
        self.url_for_display = url_for_display
        self._memory = path == ":memory:"
        self._reader_count = 0 if self._memory else max(pool_size - 1, 0)
        self._busy_timeout_ms = busy_timeout_ms
        self._writer: aiosqlite.Connection | None = None
        self._all: list[aiosqlite.Connection] = []
        self._readers: asyncio.Queue[aiosqlite.Connection] = asyncio.Queue()
        self._lock = asyncio.Lock()
        self._closing = False
        self._closed = asyncio.Event()

    # -- lifecycle -----------------------------------------------------------------------------

    async def connect(self) -> None:
        if self._writer is not None:
            return
        if self._closing:
            raise DatabaseError("this Database has been closed; open a new one")
        try:
            if not self._memory:
                self._prepare_file(Path(self.path))
            self._writer = await self._open(writer=True)
            for _ in range(self._reader_count):
                self._readers.put_nowait(await self._open(writer=False))
        except (sqlite3.Error, OSError) as exc:
            await self._close_all()
            raise DatabaseError(f"could not open SQLite database {self.path}: {exc}") from exc

    @staticmethod
    def _prepare_file(path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        # The file holds password hashes and session ids: readable by its owner only.
        with contextlib.suppress(FileExistsError):
            os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))

    async def _open(self, *, writer: bool) -> aiosqlite.Connection:
        conn = aiosqlite.connect(
            self.path,
            detect_types=sqlite3.PARSE_DECLTYPES,
            isolation_level=None,
            timeout=self._busy_timeout_ms / 1000,
        )
        await conn
        self._all.append(conn)
        conn.row_factory = _dict_row  # type: ignore[assignment]
        await conn.execute(f"PRAGMA busy_timeout = {int(self._busy_timeout_ms)}")
        await conn.execute("PRAGMA foreign_keys = ON")
        if writer:
            if not self._memory:
                await conn.execute("PRAGMA journal_mode = WAL")
            await conn.execute("PRAGMA synchronous = NORMAL")
        else:
            await conn.execute("PRAGMA query_only = ON")
        return conn

    async def close(self) -> None:
        self._guard("close")
        if self._closing:
            await self._closed.wait()
            return
        self._closing = True
        try:
            if self._writer is not None:
                async with self._lock:
                    # Taking every reader back waits for the reads in flight.
                    for _ in range(self._reader_count):
                        await self._readers.get()
            await self._close_all()
        finally:
            self._closed.set()

    async def _close_all(self) -> None:
        connections, self._all, self._writer = self._all, [], None
        for conn in connections:
            try:
                await conn.close()
            except sqlite3.Error:
                logger.exception(
                    "closing a SQLite connection failed", extra={"path": str(self.path)}
                )

    def _check_open(self, operation: str) -> aiosqlite.Connection:
        self._guard(operation)
        if self._closing:
            raise DatabaseError(f"{operation} on a closed Database")
        if self._writer is None:
            raise DatabaseError(f"{operation} before connect(); call await db.connect() first")
        return self._writer

    # -- writer and readers ----------------------------------------------------------------------

    @contextlib.asynccontextmanager
    async def _write(self, operation: str, *, atomic: bool) -> AsyncIterator[_Session]:
        """Hold the writer; with ``atomic`` wrap the block in BEGIN IMMEDIATE … COMMIT."""
        self._check_open(operation)
        async with self._lock:
            writer = self._writer  # still open: close() takes the lock after the waiters
            if writer is None:
                raise DatabaseError(f"{operation} on a closed Database")
            if writer.in_transaction:
                await self._roll_back_leftover(writer)
            if not atomic:
                yield _Session(writer)
                return
            session = _Session(writer)
            await _wrap("begin transaction", None, writer.execute("BEGIN IMMEDIATE"))
            self._enter_transaction()
            try:
                yield session
            except BaseException:
                await self._rollback(writer)
                raise
            finally:
                session.active = False
                self._leave_transaction()
            try:
                await _wrap("commit", None, writer.execute("COMMIT"))
            except BaseException:
                await self._rollback(writer)
                raise

    async def _roll_back_leftover(self, writer: aiosqlite.Connection) -> None:
        """Roll back a transaction a cancelled task left open (unless its ROLLBACK is queued)."""
        try:
            await writer.execute("ROLLBACK")
        except sqlite3.OperationalError:
            return  # the cancelled task's own ROLLBACK ran first
        logger.warning(
            "rolled back a transaction left open on the SQLite writer",
            extra={"path": str(self.path)},
        )

    async def _rollback(self, writer: aiosqlite.Connection) -> None:
        if not writer.in_transaction:  # SQLite already rolled back (e.g. disk full)
            return
        try:
            # Queued on the writer's thread before any later statement, even if we are cancelled.
            await asyncio.shield(writer.execute("ROLLBACK"))
        except sqlite3.Error:
            # _write() rolls back a transaction left open before the writer's next use.
            logger.warning("SQLite ROLLBACK failed", exc_info=True, extra={"path": str(self.path)})

    async def _read(self, operation: str, call: Callable[[_Session], Awaitable[T]]) -> T:
        self._check_open(operation)
        if self._reader_count == 0:
            async with self._write(operation, atomic=False) as session:
                return await call(session)
        conn = await self._readers.get()
        try:
            return await call(_Session(conn))
        finally:
            self._readers.put_nowait(conn)

    async def _query(self, operation: str, sql: str, call: Callable[[_Session], Awaitable[T]]) -> T:
        if first_keyword(sql) == "SELECT":
            return await self._read(operation, call)
        async with self._write(operation, atomic=False) as session:
            return await call(session)

    # -- the Connection API ----------------------------------------------------------------------

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        return self._transaction()

    @contextlib.asynccontextmanager
    async def _transaction(self) -> AsyncIterator[Connection]:
        async with self._write("transaction", atomic=True) as session:
            yield session

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        async with self._write("execute", atomic=False) as session:
            return await session.execute(sql, params)

    async def execute_many(self, sql: str, params_seq: Iterable[Mapping[str, Any]]) -> None:
        async with self._write("execute_many", atomic=True) as session:
            await session.execute_many(sql, params_seq)

    async def execute_script(self, sql: str) -> None:
        async with self._write("execute_script", atomic=True) as session:
            await session.execute_script(sql)

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return await self._query("fetch_one", sql, lambda s: s.fetch_one(sql, params))

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._query("fetch_all", sql, lambda s: s.fetch_all(sql, params))

    async def fetch_val(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._query("fetch_val", sql, lambda s: s.fetch_val(sql, params))

    async def ping(self) -> None:
        await self._read("ping", lambda s: s.fetch_val("SELECT 1"))
