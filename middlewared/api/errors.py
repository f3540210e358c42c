"""The one place where exceptions become JSON-RPC error objects.

Tracebacks (``data.trace``, a failed job's ``exception``) name the daemon's files and lines: only full
administrators (root on the unix socket included) receive them; everybody else gets the same error without.
"""
from __future__ import annotations

import errno
import logging
import traceback
from typing import Any

from middlewared.credentials import Credentials
from middlewared.errors import CallError, InstanceNotFound, ValidationErrors, errname

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
TOO_MANY_CONCURRENT_CALLS = -32000
CALL_ERROR = -32001


def _trace(exc: BaseException, shown: bool) -> dict[str, Any] | None:
    if not shown:
        return None
    return {"class": type(exc).__name__, "frames": [],
            "formatted": "".join(traceback.format_exception(exc)), "repr": repr(exc)}


def sees_traces(credentials: Credentials) -> bool:
    """Whether errors sent to these credentials carry the server's tracebacks."""
    return credentials.is_full_admin


def job_fields(fields: dict[str, Any], credentials: Credentials) -> dict[str, Any]:
    """A job record (core.get_jobs, its events) as these credentials may see it: the traceback of a
    failed job only for those who see traces (its error, errno and extra stay)."""
    if not fields.get("exception") or sees_traces(credentials):
        return fields
    return {**fields, "exception": ""}


def truenas_error(code: int, reason: str, trace: dict[str, Any] | None = None, extra: Any = None) -> dict[str, Any]:
    """The ``data`` object of a TrueNAS error."""
    return {"error": code, "errname": errname(code), "reason": reason, "trace": trace, "extra": extra}


def error_object(exc: BaseException, method: str | None = None, trace: bool = False) -> dict[str, Any]:
    """Map an exception raised by a call to the JSON-RPC ``error`` member (trace: include the traceback,
    for callers that sees_traces())."""
    if isinstance(exc, InstanceNotFound):
        # A failed lookup, not a bad parameter: a call error carrying ENOENT, which is where TrueNAS
        # clients read an errno from (they give -32602 errors no errno of their own).
        message = exc.errors[0].errmsg
        data = truenas_error(errno.ENOENT, f"[{errname(errno.ENOENT)}] {message}", _trace(exc, trace))
        return {"code": CALL_ERROR, "message": "Method call error", "data": data}
    if isinstance(exc, ValidationErrors):
        data = truenas_error(errno.EINVAL, str(exc), _trace(exc, trace), [e.as_list() for e in exc.errors])
        return {"code": INVALID_PARAMS, "message": "Invalid params", "data": data}
    if isinstance(exc, CallError):
        data = truenas_error(exc.errno, str(exc), _trace(exc, trace), exc.extra)
        return {"code": CALL_ERROR, "message": "Method call error", "data": data}
    logger.error("unexpected error in %s", method or "call", exc_info=exc)
    reason = str(exc) or repr(exc)
    return {"code": CALL_ERROR, "message": "Method call error",
            "data": truenas_error(errno.EINVAL, reason, _trace(exc, trace), None)}


def nesting_error(limit: int) -> dict[str, Any]:
    """The answer to a request nested deeper than limit: invalid params, like any validation failure."""
    reason = f"Arrays and objects nested deeper than {limit} levels"
    return {"code": INVALID_PARAMS, "message": "Invalid params",
            "data": truenas_error(errno.EINVAL, f"[EINVAL] params: {reason}", None, [["params", reason, errno.EINVAL]])}


def simple_error(code: int, message: str, errno_: int = errno.EINVAL, reason: str | None = None) -> dict[str, Any]:
    """An error object for protocol-level failures (parse, invalid request, unknown method, limits)."""
    return {"code": code, "message": message, "data": truenas_error(errno_, reason or message)}
