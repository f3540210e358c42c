"""Who is on the other end of a connection: every connection carries one Credentials from the start."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Iterable

from middlewared import roles as roles_


@dataclass(frozen=True)
class ScopedGrant:
    """Roles (expanded) held only on the VMs of one VM group subtree ("VM_GROUP") or on one VM ("VM")."""

    roles: frozenset[str]
    scope_type: str
    scope_id: int


@dataclass(frozen=True)
class Credentials:
    """An authenticated (or anonymous) identity, the roles it holds everywhere (expanded) and its scoped grants."""

    kind: str
    username: str | None = None
    roles: frozenset[str] = field(default_factory=frozenset)
    attributes: dict[str, Any] = field(default_factory=dict, compare=False)
    user_id: int | None = None
    grants: tuple[ScopedGrant, ...] = ()
    api_key_id: int | None = None
    # Unix time after which calls fail with "Session is expired" (an API key's expiry), or None.
    expires: float | None = None

    @property
    def authenticated(self) -> bool:
        return self.kind != "ANONYMOUS"

    @property
    def is_full_admin(self) -> bool:
        return roles_.FULL_ADMIN in self.roles

    @property
    def expired(self) -> bool:
        return self.expires is not None and time.time() >= self.expires

    def has_role(self, required: Iterable[str]) -> bool:
        """True when any of required roles is granted everywhere (scoped grants do not count)."""
        return roles_.allows(self.roles, required)

    def scoped_roles(self) -> frozenset[str]:
        """Roles held on at least one VM group or VM."""
        out: frozenset[str] = frozenset()
        for grant in self.grants:
            out |= grant.roles
        return out

    def encode(self) -> dict[str, Any] | None:
        """The form shown in job records (``credentials`` field)."""
        if not self.authenticated:
            return None
        return {"type": self.kind, "data": {"username": self.username}}


ANONYMOUS = Credentials("ANONYMOUS")


def root(kind: str = "UNIX_SOCKET") -> Credentials:
    """Full administrator credentials, e.g. for uid 0 on the unix socket."""
    return Credentials(kind, "root", roles_.expand([roles_.FULL_ADMIN, roles_.AUTHENTICATED]))


def with_roles(kind: str, username: str, granted: Iterable[str], **more: Any) -> Credentials:
    """Credentials holding the given roles (expanded, plus AUTHENTICATED)."""
    return Credentials(kind, username, roles_.expand([*granted, roles_.AUTHENTICATED]), **more)
