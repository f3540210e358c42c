"""One SQLite file (WAL, foreign keys on), used from one dedicated thread; every write is one transaction."""
from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Callable, Sequence, TypeVar

from middlewared.datastore.migrations import MIGRATIONS, Migration

logger = logging.getLogger(__name__)

T = TypeVar("T")
Row = dict[str, Any]


class Datastore:
    """The daemon's database: opened once, migrated, then reached through run() and transaction()."""

    def __init__(self, path: str, migrations: Sequence[Migration] = MIGRATIONS) -> None:
        self.path = path
        self.migrations = migrations
        # A single thread owns the sqlite3 connection: blocking I/O stays off the event loop and
        # writes are serialised without extra locking.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="datastore")
        self._conn: sqlite3.Connection | None = None

    async def open(self) -> None:
        """Create the file if needed, set WAL and foreign keys, and apply pending migrations."""
        await self._in_thread(self._open)

    def _open(self) -> None:
        directory = os.path.dirname(self.path)
        if directory:
            os.makedirs(directory, mode=0o700, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        conn.row_factory = sqlite3.Row
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        conn.execute("PRAGMA synchronous=NORMAL")
        self._conn = conn
        apply_migrations(conn, self.migrations)

    async def close(self) -> None:
        """Close the connection and stop the thread."""
        if self._conn is not None:
            await self._in_thread(self._conn.close)
            self._conn = None
        self._executor.shutdown(wait=True)

    async def _in_thread(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @property
    def conn(self) -> sqlite3.Connection:
        if self._conn is None:
            raise RuntimeError("datastore is not open")
        return self._conn

    async def fetchall(self, sql: str, params: Sequence[Any] = ()) -> list[Row]:
        """Rows of a read-only statement as dicts."""
        def run() -> list[Row]:
            return [dict(r) for r in self.conn.execute(sql, params).fetchall()]
        return await self._in_thread(run)

    async def transaction(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) in the database thread inside one transaction; any exception rolls it back.

        fn may also make other blocking calls (libvirt) that must succeed for the write to stand.
        """
        def run() -> T:
            conn = self.conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                result = fn(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")
            return result
        return await self._in_thread(run)

    async def exclusively(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run fn(conn) in the database thread without opening a transaction: fn opens its own.

        No other write runs meanwhile (they all pass through this one thread), so fn may commit one
        step before it makes the next, as crash recovery must.
        """
        return await self._in_thread(fn, self.conn)


def apply_migrations(conn: sqlite3.Connection, migrations: Sequence[Migration]) -> None:
    """Apply each migration newer than the recorded version, each in its own transaction."""
    conn.execute("CREATE TABLE IF NOT EXISTS migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL,"
                 " applied_at TEXT NOT NULL DEFAULT CURRENT_TIMESTAMP)")
    done = {r[0] for r in conn.execute("SELECT version FROM migrations")}
    versions = [m.version for m in migrations]
    if versions != sorted(set(versions)):
        raise RuntimeError("migration versions must be unique and increasing")
    for migration in migrations:
        if migration.version in done:
            continue
        logger.info("applying database migration %d: %s", migration.version, migration.name)
        conn.execute("BEGIN IMMEDIATE")
        try:
            for statement in migration.statements:
                conn.execute(statement)
            conn.execute("INSERT INTO migrations (version, name) VALUES (?, ?)",
                         (migration.version, migration.name))
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")
