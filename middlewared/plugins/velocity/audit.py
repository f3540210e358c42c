"""Velocity requests in the daemon's audit log, beside JSON-RPC's: every request that may change state,
refused or not, with secrets masked by the same rule as JSON-RPC's records."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from middlewared.api.server import peer_origin
from middlewared.middleware import AuditSource, redact

if TYPE_CHECKING:
    from middlewared.plugins.velocity.endpoint import Call
    from middlewared.plugins.velocity.errors import VelocityError

SERVICE = "VELOCITY"
# A streamed upload has no JSON body: its parameters are these headers (x-velocity-authkey is masked as the
# body's authkey is).
HEADER_PREFIX = "x-velocity-"


def params(call: "Call") -> dict[str, Any]:
    """What the request asked, as the audit log keeps it: the JSON body or the upload's headers."""
    if call.endpoint.raw_body:
        return {name[len(HEADER_PREFIX):].lower(): value for name, value in call.request.headers.items()
                if name.lower().startswith(HEADER_PREFIX)}
    return call.body


def describe(failure: "VelocityError") -> str:
    """An error answer as the audit log reads it."""
    return f"HTTP {failure.status}, code {failure.code}: {failure.message}"


def record(call: "Call", error: str | None) -> None:
    """One record of a request that may change state (reads are not recorded: endpoint.audit is None)."""
    log = call.middleware.audit_log
    event = call.endpoint.audit
    if log is None or event is None:
        return
    source = AuditSource(call.username, peer_origin(call.request), call.session, SERVICE)
    log.record(event, source, f"{call.endpoint.method} {call.endpoint.path}", redact(params(call)), error)
