"""PostgreSQL backend (aiopg): a pool of connections, one per statement or transaction.

``:name`` parameters are converted to psycopg2's ``%(name)s`` (see ``base.to_pyformat``);
dicts and lists are sent as JSON; every session runs with ``TIME ZONE 'UTC'`` so TIMESTAMPTZ
columns come back as UTC datetimes.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any, TypeVar

import aiopg
import psycopg2
import psycopg2.extensions
from psycopg2.extras import Json

from .base import (
    Connection,
    Database,
    DatabaseError,
    Dialect,
    IntegrityError,
    Row,
    describe_sql,
    dump_json,
    require_aware,
    to_pyformat,
)

logger = logging.getLogger(__name__)

T = TypeVar("T")

#: Bound on connecting, waiting for a pooled connection and running one statement.
TIMEOUT_SECONDS = 10.0
#: Bound on one execute_script(): migrations may build indexes or wait for another instance's.
SCRIPT_TIMEOUT_SECONDS = 600.0


def adapt_value(value: Any) -> Any:
    """Turn a parameter value into what psycopg2 sends."""
    if isinstance(value, datetime):
        return require_aware(value)
    if isinstance(value, dict | list):
        text = dump_json(value)  # serialise now so a bad value fails here, as on SQLite
        return Json(value, dumps=lambda _: text)
    return value


def _convert(
    operation: str, sql: str, params: Mapping[str, Any] | None
) -> tuple[str, dict[str, Any]]:
    query, names = to_pyformat(sql)
    values = {} if params is None else params
    missing = sorted(names.difference(values))
    if missing:
        raise DatabaseError(
            f"PostgreSQL {operation} failed: no value supplied for parameter :{missing[0]} "
            f"({describe_sql(sql)})"
        )
    return query, {name: adapt_value(values[name]) for name in names}


def _driver_message(exc: psycopg2.Error) -> str:
    """The server's one-line message; not DETAIL, which can quote row values."""
    diag = getattr(exc, "diag", None)
    primary = getattr(diag, "message_primary", None)
    return str(primary) if primary else str(exc)


def _row(names: list[str], values: tuple[Any, ...]) -> Row:
    return {
        name: bytes(value) if isinstance(value, memoryview) else value
        for name, value in zip(names, values, strict=True)
    }


class _Cursor:
    """Runs statements on one pooled aiopg connection and maps driver errors."""

    def __init__(self, conn: aiopg.Connection, scrub: Callable[[str], str]) -> None:
        self.conn = conn
        self._scrub = scrub

    async def run(
        self,
        operation: str,
        sql: str,
        params: Any,
        fetch: int | None,
        limit_seconds: float | None = None,
    ) -> tuple[int, list[Row]]:
        """Execute; fetch ``fetch`` rows (None: all, 0: none). Returns (rowcount, rows)."""
        if limit_seconds is None:
            limit_seconds = TIMEOUT_SECONDS
        try:
            async with self.conn.cursor(timeout=limit_seconds) as cursor:
                await cursor.execute(sql, params)
                rows: list[Row] = []
                if fetch != 0 and cursor.description is not None:
                    names = [column[0] for column in cursor.description]
                    raw = await (cursor.fetchmany(fetch) if fetch else cursor.fetchall())
                    rows = [_row(names, values) for values in raw]
                return int(cursor.rowcount), rows
        except psycopg2.Error as exc:
            cls = IntegrityError if isinstance(exc, psycopg2.IntegrityError) else DatabaseError
            message = self._scrub(_driver_message(exc))
            raise cls(f"PostgreSQL {operation} failed: {message} ({describe_sql(sql)})") from exc
        except TimeoutError as exc:
            raise DatabaseError(
                f"PostgreSQL {operation} timed out after {limit_seconds:g} s ({describe_sql(sql)})"
            ) from exc


class _Session(Connection):
    """The Connection API on one pooled connection."""

    def __init__(self, cursor: _Cursor) -> None:
        self._cursor = cursor
        self.active = True

    async def _run(
        self, operation: str, sql: str, params: Mapping[str, Any] | None, fetch: int | None
    ) -> tuple[int, list[Row]]:
        if not self.active:
            raise DatabaseError("this transaction has already ended")
        query, values = _convert(operation, sql, params)
        return await self._cursor.run(operation, query, values, fetch)

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return (await self._run("execute", sql, params, 0))[0]

    async def execute_many(self, sql: str, params_seq: Iterable[Mapping[str, Any]]) -> None:
        # aiopg has no executemany in async mode; one round trip per row, inside a transaction.
        for params in params_seq:
            await self._run("execute_many", sql, params, 0)

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        rows = (await self._run("fetch_one", sql, params, 1))[1]
        return rows[0] if rows else None

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return (await self._run("fetch_all", sql, params, None))[1]

    async def fetch_val(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        rows = (await self._run("fetch_val", sql, params, 1))[1]
        return next(iter(rows[0].values()), None) if rows else None

    async def execute_script(self, sql: str) -> None:
        if not self.active:
            raise DatabaseError("this transaction has already ended")
        # No parameters: psycopg2 sends the text as is (no % escaping), several statements at once.
        await self._cursor.run("execute_script", sql, None, 0, SCRIPT_TIMEOUT_SECONDS)


async def _set_utc(conn: aiopg.Connection) -> None:
    async with conn.cursor() as cursor:
        await cursor.execute("SET TIME ZONE 'UTC'")


class PostgresDatabase(Database):
    """A PostgreSQL database behind the Database API."""

    dialect: Dialect = "postgresql"

    def __init__(
        self, dsn: str, *, url_for_display: str, secrets: Iterable[str] = (), pool_size: int = 5
    ) -> None:
        super().__init__()
        self._dsn = dsn
        self.url_for_display = url_for_display
        self._secrets = [secret for secret in secrets if secret]
        self._pool_size = max(pool_size, 1)
        self._pool: aiopg.Pool | None = None
        self._closing = False

    def _scrub(self, text: str) -> str:
        """One line of driver message without the DSN or any password in it."""
        lines = (" ".join(line.split()) for line in text.splitlines())
        text = "; ".join(line for line in lines if line).replace(self._dsn, self.url_for_display)
        for secret in self._secrets:
            text = text.replace(secret, "***")
        return text

    async def connect(self) -> None:
        if self._pool is not None:
            return
        if self._closing:
            raise DatabaseError("this Database has been closed; open a new one")
        try:
            self._pool = await aiopg.create_pool(
                self._dsn,
                minsize=1,
                maxsize=self._pool_size,
                timeout=TIMEOUT_SECONDS,
                enable_hstore=False,
                on_connect=_set_utc,
            )
        except (psycopg2.Error, OSError) as exc:
            message = self._scrub(str(exc))
            raise DatabaseError(
                f"could not connect to PostgreSQL at {self.url_for_display}: {message}"
            ) from exc

    @contextlib.asynccontextmanager
    async def dedicated_connection(self) -> AsyncIterator[Connection]:
        """A connection of its own, outside the pool, closed when the block ends.

        For session state that must not leak into pooled connections, such as a session-level
        advisory lock (leader election). Statements run in autocommit; if the server drops the
        connection, the next statement raises :class:`DatabaseError`.
        """
        self._guard("dedicated_connection")
        if self._closing:
            raise DatabaseError("dedicated_connection on a closed Database")
        try:
            conn = await aiopg.connect(self._dsn, timeout=TIMEOUT_SECONDS, enable_hstore=False)
        except (psycopg2.Error, OSError, TimeoutError) as exc:
            message = self._scrub(str(exc))
            raise DatabaseError(
                f"could not connect to PostgreSQL at {self.url_for_display}: {message}"
            ) from exc
        try:
            session = _Session(_Cursor(conn, self._scrub))
            await session.execute("SET TIME ZONE 'UTC'")
            yield session
        finally:
            await conn.close()

    async def close(self) -> None:
        self._guard("close")
        self._closing = True
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.close()  # refuses new acquisitions; wait_closed waits for those in use
            await pool.wait_closed()

    @contextlib.asynccontextmanager
    async def _acquire(self, operation: str) -> AsyncIterator[_Cursor]:
        self._guard(operation)
        if self._closing:
            raise DatabaseError(f"{operation} on a closed Database")
        pool = self._pool
        if pool is None:
            raise DatabaseError(f"{operation} before connect(); call await db.connect() first")
        try:
            conn = await pool.acquire()
        except RuntimeError as exc:  # aiopg: "Cannot acquire connection after closing pool"
            raise DatabaseError(f"{operation} on a closed Database") from exc
        except (psycopg2.Error, OSError) as exc:
            message = self._scrub(str(exc))
            raise DatabaseError(f"PostgreSQL {operation}: no connection: {message}") from exc
        except TimeoutError as exc:
            raise DatabaseError(
                f"PostgreSQL {operation}: no free connection within {TIMEOUT_SECONDS:g} s"
            ) from exc
        try:
            yield _Cursor(conn, self._scrub)
        finally:
            status = None if conn.closed else conn.raw.get_transaction_status()
            if status not in (None, psycopg2.extensions.TRANSACTION_STATUS_IDLE):
                conn.close()  # never hand a connection in a transaction back to the pool
            await pool.release(conn)

    async def _single(self, operation: str, call: Callable[[_Session], Awaitable[T]]) -> T:
        async with self._acquire(operation) as cursor:
            return await call(_Session(cursor))

    async def _atomic(self, operation: str, call: Callable[[_Session], Awaitable[None]]) -> None:
        async with self._begin(operation) as session:
            await call(session)

    def transaction(self) -> contextlib.AbstractAsyncContextManager[Connection]:
        return self._begin("transaction")

    @contextlib.asynccontextmanager
    async def _begin(self, operation: str) -> AsyncIterator[_Session]:
        async with self._acquire(operation) as cursor:
            await cursor.run("begin transaction", "BEGIN", None, 0)
            session = _Session(cursor)
            self._enter_transaction()
            try:
                yield session
            except BaseException:
                await self._rollback(cursor)
                raise
            finally:
                session.active = False
                self._leave_transaction()
            try:
                await cursor.run("commit", "COMMIT", None, 0)
            except BaseException:
                await self._rollback(cursor)
                raise

    async def _rollback(self, cursor: _Cursor) -> None:
        """Roll back; on failure drop the connection (which discards the transaction)."""
        if cursor.conn.closed:  # aiopg closes a connection whose statement was cancelled
            return
        try:
            await cursor.run("rollback", "ROLLBACK", None, 0)
        except Exception:
            logger.warning(
                "ROLLBACK failed; discarding the connection",
                exc_info=True,
                extra={"database": self.url_for_display},
            )
            cursor.conn.close()

    async def execute(self, sql: str, params: Mapping[str, Any] | None = None) -> int:
        return await self._single("execute", lambda s: s.execute(sql, params))

    async def execute_many(self, sql: str, params_seq: Iterable[Mapping[str, Any]]) -> None:
        await self._atomic("execute_many", lambda s: s.execute_many(sql, params_seq))

    async def execute_script(self, sql: str) -> None:
        await self._atomic("execute_script", lambda s: s.execute_script(sql))

    async def fetch_one(self, sql: str, params: Mapping[str, Any] | None = None) -> Row | None:
        return await self._single("fetch_one", lambda s: s.fetch_one(sql, params))

    async def fetch_all(self, sql: str, params: Mapping[str, Any] | None = None) -> list[Row]:
        return await self._single("fetch_all", lambda s: s.fetch_all(sql, params))

    async def fetch_val(self, sql: str, params: Mapping[str, Any] | None = None) -> Any:
        return await self._single("fetch_val", lambda s: s.fetch_val(sql, params))

    async def ping(self) -> None:
        await self._single("ping", lambda s: s.fetch_val("SELECT 1"))
