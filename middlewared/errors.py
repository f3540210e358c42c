"""The small exception hierarchy of the API, and the errno names used on the wire."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import Any, Iterator

# TrueNAS' own errnos above the system range (truenas_api_client/exc.py).
ENOMETHOD = 201
ESERVICESTARTFAILURE = 202
ENOTAUTHENTICATED = 207

_CUSTOM_ERRNAMES = {
    ENOMETHOD: "ENOMETHOD",
    ESERVICESTARTFAILURE: "ESERVICESTARTFAILURE",
    ENOTAUTHENTICATED: "ENOTAUTHENTICATED",
}


def errname(code: int) -> str:
    """Return the symbolic name of an errno, TrueNAS' custom ones included."""
    return _CUSTOM_ERRNAMES.get(code) or errno.errorcode.get(code) or "EUNKNOWN"


class MiddlewareError(Exception):
    """Base of every error the API reports on purpose."""


class CallError(MiddlewareError):
    """A call failed for a reason the caller should see: -32001 on the wire."""

    def __init__(self, errmsg: str, errno_: int = errno.EFAULT, extra: Any = None) -> None:
        super().__init__(errmsg)
        self.errmsg = errmsg
        self.errno = errno_
        self.extra = extra

    def __str__(self) -> str:
        return f"[{errname(self.errno)}] {self.errmsg}"


@dataclass(frozen=True)
class ValidationError:
    """One invalid attribute: a dotted path (or None), a message and an errno."""

    attribute: str | None
    errmsg: str
    errno: int = errno.EINVAL

    def as_list(self) -> list[Any]:
        """The ``[attribute, message, errno]`` triple TrueNAS puts in ``data.extra``."""
        return [self.attribute, self.errmsg, self.errno]

    def __str__(self) -> str:
        return f"[{errname(self.errno)}] {self.attribute or 'ALL'}: {self.errmsg}"


class ValidationErrors(MiddlewareError):
    """Every invalid attribute of one request, reported at once: -32602 on the wire."""

    def __init__(self, errors: list[ValidationError] | None = None) -> None:
        super().__init__()
        self.errors: list[ValidationError] = list(errors or [])

    def add(self, attribute: str | None, errmsg: str, errno_: int = errno.EINVAL) -> None:
        """Record one more error."""
        self.errors.append(ValidationError(attribute, errmsg, errno_))

    def extend(self, other: "ValidationErrors") -> None:
        """Take over the errors of another collection."""
        self.errors.extend(other.errors)

    def check(self) -> None:
        """Raise self when any error was recorded."""
        if self.errors:
            raise self

    def __bool__(self) -> bool:
        return bool(self.errors)

    def __iter__(self) -> Iterator[ValidationError]:
        return iter(self.errors)

    def __len__(self) -> int:
        return len(self.errors)

    def __str__(self) -> str:
        return "\n".join(str(e) for e in self.errors)


class InstanceNotFound(ValidationErrors):
    """``get_instance`` on a missing id: a validation error without attribute, errno ENOENT (on the wire a
    call error, -32001 with errno ENOENT: clients read an errno there only)."""

    def __init__(self, errmsg: str) -> None:
        super().__init__([ValidationError(None, errmsg, errno.ENOENT)])


class MatchNotFound(IndexError):
    """A query with ``get: true`` matched nothing."""

    def __init__(self) -> None:
        super().__init__()


class JobAborted(MiddlewareError):
    """A job was aborted before it finished."""


def not_authenticated() -> CallError:
    """The error every protected method answers to an anonymous connection."""
    return CallError("Not authenticated", ENOTAUTHENTICATED)


def not_authorized() -> CallError:
    """The error answered when credentials lack the method's roles."""
    return CallError("Not authorized", errno.EACCES)
