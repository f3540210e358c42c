"""The one place where exceptions become JSON-RPC error objects."""
from __future__ import annotations

import errno
import logging
import traceback
from typing import Any

from middlewared.errors import CallError, ValidationErrors, errname

logger = logging.getLogger(__name__)

PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
TOO_MANY_CONCURRENT_CALLS = -32000
CALL_ERROR = -32001


def _trace(exc: BaseException) -> dict[str, Any]:
    return {"class": type(exc).__name__, "frames": [],
            "formatted": "".join(traceback.format_exception(exc)), "repr": repr(exc)}


def truenas_error(code: int, reason: str, trace: dict[str, Any] | None = None, extra: Any = None) -> dict[str, Any]:
    """The ``data`` object of a TrueNAS error."""
    return {"error": code, "errname": errname(code), "reason": reason, "trace": trace, "extra": extra}


def error_object(exc: BaseException, method: str | None = None) -> dict[str, Any]:
    """Map an exception raised by a call to the JSON-RPC ``error`` member."""
    if isinstance(exc, ValidationErrors):
        data = truenas_error(errno.EINVAL, str(exc), _trace(exc), [e.as_list() for e in exc.errors])
        return {"code": INVALID_PARAMS, "message": "Invalid params", "data": data}
    if isinstance(exc, CallError):
        data = truenas_error(exc.errno, str(exc), _trace(exc), exc.extra)
        return {"code": CALL_ERROR, "message": "Method call error", "data": data}
    logger.error("unexpected error in %s", method or "call", exc_info=exc)
    reason = str(exc) or repr(exc)
    return {"code": CALL_ERROR, "message": "Method call error",
            "data": truenas_error(errno.EINVAL, reason, _trace(exc), None)}


def simple_error(code: int, message: str, errno_: int = errno.EINVAL, reason: str | None = None) -> dict[str, Any]:
    """An error object for protocol-level failures (parse, invalid request, unknown method, limits)."""
    return {"code": code, "message": message, "data": truenas_error(errno_, reason or message)}
