"""Who is on the other end of a connection: every connection carries one Credentials from the start."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable

from middlewared import roles as roles_


@dataclass(frozen=True)
class Credentials:
    """An authenticated (or anonymous) identity and the roles it holds, already expanded."""

    kind: str
    username: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def authenticated(self) -> bool:
        return self.kind != "ANONYMOUS"

    @property
    def is_full_admin(self) -> bool:
        return roles_.FULL_ADMIN in self.roles

    def has_role(self, required: Iterable[str]) -> bool:
        """True when any of required roles is granted."""
        return roles_.allows(self.roles, required)

    def encode(self) -> dict[str, Any] | None:
        """The form shown in job records (``credentials`` field)."""
        if not self.authenticated:
            return None
        return {"type": self.kind, "data": {"username": self.username}}


ANONYMOUS = Credentials("ANONYMOUS")


def root(kind: str = "UNIX_SOCKET") -> Credentials:
    """Full administrator credentials, e.g. for uid 0 on the unix socket."""
    return Credentials(kind, "root", roles_.expand([roles_.FULL_ADMIN]))


def with_roles(kind: str, username: str, granted: Iterable[str]) -> Credentials:
    """Credentials holding the given roles (expanded)."""
    return Credentials(kind, username, roles_.expand(granted))
