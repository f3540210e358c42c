"""Exceptions raised by the midclt client, and errno names as the server spells them."""
from __future__ import annotations

import errno
from typing import Any, NamedTuple

# TrueNAS' errnos above the system range (truenas_api_client/exc.py::ErrnoMixin).
_CUSTOM_ERRNAMES = {
    201: "ENOMETHOD",
    202: "ESERVICESTARTFAILURE",
    203: "EALERTCHECKERUNAVAILABLE",
    204: "EREMOTENODEERROR",
    205: "EDATASETISLOCKED",
    206: "EINVALIDRRDTIMESTAMP",
    207: "ENOTAUTHENTICATED",
    208: "ESSLCERTVERIFICATIONERROR",
    209: "EREBOOTREQUIRED",
    210: "EHAUNAVAILABLE",
}


def errname(code: int | None) -> str:
    """Return the symbolic name of an errno, TrueNAS' custom ones included."""
    if code is None:
        return "EUNKNOWN"
    return _CUSTOM_ERRNAMES.get(code) or errno.errorcode.get(code) or "EUNKNOWN"


class ClientException(Exception):
    """A call failed: the server's reason, errno, formatted trace and extra data."""

    def __init__(
        self,
        error: str,
        errno: int | None = None,
        trace: dict[str, Any] | None = None,
        extra: Any = None,
        *,
        code: int | None = None,
    ) -> None:
        super().__init__(error)
        self.error = error
        self.errno = errno
        self.trace = trace
        self.extra = extra
        self.code = code  # the JSON-RPC error code, when the error came from a response

    def __str__(self) -> str:
        return self.error


class ValidationError(NamedTuple):
    """One invalid attribute: a dotted path (or None), a message and an errno."""

    attribute: str | None
    errmsg: str
    errno: int

    def __str__(self) -> str:
        return f"[{errname(self.errno)}] {self.attribute or 'ALL'}: {self.errmsg}"


class ValidationErrors(ClientException):
    """The server rejected the arguments (-32602, or a job failing with type VALIDATION)."""

    def __init__(self, errors: list[Any], *, code: int | None = -32602) -> None:
        self.errors = [_validation_error(item) for item in errors]
        super().__init__(str(self), errno.EINVAL, extra=errors, code=code)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


def _validation_error(item: Any) -> ValidationError:
    """Build one ValidationError from an ``[attribute, message, errno]`` triple."""
    values = list(item)
    attribute = values[0] if values else None
    errmsg = str(values[1]) if len(values) > 1 else ""
    code = values[2] if len(values) > 2 and isinstance(values[2], int) else errno.EINVAL
    return ValidationError(attribute, errmsg, code)


class CallTimeout(ClientException):
    """No answer arrived within the call's timeout."""

    def __init__(self) -> None:
        super().__init__("Call timeout", errno.ETIMEDOUT)


class ConnectError(ClientException):
    """The connection to the daemon could not be opened (errno of the socket error, if any)."""
