"""Velocity's error bodies ``{code, message}`` and its numeric codes.

A code is ``route * 1000 + method * 100 + category * 10 + n``: the route number of the path (Velocity's own
numbers, new paths from 18 up), the method digit (1 POST, 2 PUT, 3 DELETE, 4 PATCH), and the category
(0 permission, 1 not found, 2 conflict or refused action; beyond Velocity, 3 a malformed or invalid
request and 9 an internal error). Code 100 is a missing authkey, 101 an unknown or expired one.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

ROUTES: dict[str, int] = {
    "/u/auth": 1, "/u/user": 2, "/u/user/list": 3, "/u/user/permission": 4, "/u/group": 5,
    "/m/pool/assign": 6, "/m/pool/list": 7, "/m/media/create": 8, "/m/media/upload": 9, "/m/media/list": 10,
    "/v/nic/list": 11, "/v/vm/efi": 12, "/v/vm/state": 13, "/v/vm": 16, "/v/vm/list": 17,
    # Paths Velocity documents without a number, and the ones added here.
    "/u/group/list": 18, "/m/media": 19, "/m/media/download": 20, "/v/vm/console": 21,
}
METHODS: dict[str, int] = {"POST": 1, "PUT": 2, "DELETE": 3, "PATCH": 4}

UNAUTHORIZED = 100
BAD_AUTHKEY = 101
NO_ROUTE = 0

MALFORMED, INVALID, TOO_LARGE, INTERNAL = 30, 31, 32, 90


def base(path: str, method: str) -> int:
    """The route and method part of an endpoint's codes."""
    return ROUTES.get(path, 0) * 1000 + METHODS.get(method, 0) * 100


@dataclass(frozen=True)
class ErrorSpec:
    """One error an endpoint answers: HTTP status, Velocity code, what it means."""

    status: int
    code: int
    description: str


class VelocityError(Exception):
    """An error answered as ``{code, message}`` with an HTTP status."""

    def __init__(self, status: int, code: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    def body(self) -> dict[str, Any]:
        # vCMD reads a 400's text from "reason" (the field of Vapor's own 400 bodies).
        extra = {"reason": self.message} if self.status == 400 else {}
        return {"code": self.code, "message": self.message, **extra}


ERROR_BODY: dict[str, Any] = {
    "type": "object", "required": ["code", "message"], "additionalProperties": False,
    "description": "Every error: a Velocity error code and a message for people.",
    "properties": {
        "code": {"type": "integer", "description": "route * 1000 + method * 100 + category * 10 + n."},
        "message": {"type": "string", "description": "What went wrong."},
        "reason": {"type": "string", "description": "400 only: the message again (Vapor's field, which "
                                                    "Velocity's CLI reads)."},
    },
}
