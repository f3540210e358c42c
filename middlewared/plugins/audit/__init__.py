"""audit.*: a record of logins, failed logins and write calls, kept in SQLite with bounded retention."""
from __future__ import annotations

from typing import TYPE_CHECKING

from middlewared.plugin import Plugin
from middlewared.plugins.audit.service import AuditService, SqliteAuditLog

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


async def setup(middleware: "Middleware") -> None:
    """Record from now on."""
    middleware.audit_log = SqliteAuditLog(middleware)


async def teardown(middleware: "Middleware") -> None:
    """Let pending records reach the database."""
    log = middleware.audit_log
    middleware.audit_log = None
    if isinstance(log, SqliteAuditLog):
        await log.flush()


PLUGIN = Plugin(name="audit", services=(AuditService,), depends=("core",), setup=setup, teardown=teardown)
