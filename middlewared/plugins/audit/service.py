"""The audit log: records written in the background, queried by administrators with audit.query."""
from __future__ import annotations

import asyncio
import json
import logging
import sqlite3
import time
from typing import TYPE_CHECKING, Any

from middlewared.crud import query_rows
from middlewared.service import QUERY_FILTERS, QUERY_OPTIONS, Service, api_method

if TYPE_CHECKING:
    from middlewared.middleware import AuditSource, Middleware

logger = logging.getLogger(__name__)

PRUNE_EVERY = 100  # records between two retention passes

RESULT: dict[str, Any] = {
    "title": "result", "description": "Audit records (newest last), one record (get) or a count. Each has "
                                      "audit_id, timestamp ({$date}), event (AUTHENTICATION, LOGOUT, METHOD_CALL), "
                                      "service (MIDDLEWARE: JSON-RPC, VELOCITY: the REST API), username, origin, "
                                      "session, method (a REST call's is its HTTP method and path), params "
                                      "(secrets redacted), success, error.",
    "anyOf": [{"type": "array", "items": {"type": "object"}}, {"type": "object"}, {"type": "integer"}],
}


class SqliteAuditLog:
    """The middleware's AuditLog: one INSERT per record on the datastore thread, never blocking a call."""

    def __init__(self, middleware: "Middleware") -> None:
        self.middleware = middleware
        self.max_entries = middleware.config.auth.audit_max_entries
        self._pending: set[asyncio.Task[None]] = set()
        self._count = 0

    def record(self, event: str, source: "AuditSource", method: str | None, params: Any, error: str | None) -> None:
        """Queue one record."""
        row = (time.time(), event, source.service, source.username, source.origin, source.session, method,
               json.dumps(params, default=str), error is None, error)
        self._count += 1
        task = asyncio.create_task(self._insert(row, self._count % PRUNE_EVERY == 0))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _insert(self, row: tuple[Any, ...], prune: bool) -> None:
        ds = self.middleware.datastore
        if ds is None:
            return
        keep = self.max_entries

        def write(db: sqlite3.Connection) -> None:
            db.execute("INSERT INTO audit_log (timestamp, event, service, username, origin, session, method, params,"
                       " success, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)
            if prune:
                db.execute("DELETE FROM audit_log WHERE id <= (SELECT MAX(id) FROM audit_log) - ?", (keep,))
        try:
            await ds.transaction(write)
        except Exception:
            logger.exception("cannot write an audit record")

    async def flush(self) -> None:
        """Wait for queued records."""
        if self._pending:
            await asyncio.gather(*self._pending, return_exceptions=True)


class AuditService(Service):
    """audit.*."""

    namespace = "audit"

    @api_method(params=[QUERY_FILTERS, QUERY_OPTIONS], result=RESULT, roles=("AUDIT_READ",))
    async def query(self, filters: list[Any], options: dict[str, Any]) -> Any:
        """Audit records matching filters, shaped by options."""
        log = self.middleware.audit_log
        if isinstance(log, SqliteAuditLog):
            await log.flush()  # so that a caller sees what it just did
        ds = self.middleware.db
        rows = [{"audit_id": r["id"], "timestamp": {"$date": int(r["timestamp"] * 1000)}, "event": r["event"],
                 "service": r["service"], "username": r["username"], "origin": r["origin"], "session": r["session"],
                 "method": r["method"], "params": json.loads(r["params"]), "success": bool(r["success"]),
                 "error": r["error"]}
                for r in await ds.fetchall("SELECT * FROM audit_log ORDER BY id")]
        return query_rows(rows, filters, options)
