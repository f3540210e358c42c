"""The role table (what each role includes) and role checks for credentials."""
from __future__ import annotations

from typing import Iterable

FULL_ADMIN = "FULL_ADMIN"
READONLY_ADMIN = "READONLY_ADMIN"

# role -> roles it includes (TrueNAS role.py, the part this daemon serves).
ROLES: dict[str, frozenset[str]] = {
    FULL_ADMIN: frozenset(),
    READONLY_ADMIN: frozenset(),  # every *_READ role, expanded below
    "VM_READ": frozenset(),
    "VM_WRITE": frozenset({"VM_READ"}),
    "VM_DEVICE_READ": frozenset({"VM_READ"}),
    "VM_DEVICE_WRITE": frozenset({"VM_WRITE", "VM_DEVICE_READ"}),
}


def register_role(name: str, includes: Iterable[str] = ()) -> None:
    """Declare a role for a new namespace; declaring a name twice is a start-up error."""
    if name in ROLES:
        raise ValueError(f"role {name} is already declared")
    ROLES[name] = frozenset(includes)


def expand(roles: Iterable[str]) -> frozenset[str]:
    """All roles that a set of granted roles amounts to, includes followed transitively."""
    out: set[str] = set()
    todo = list(roles)
    while todo:
        role = todo.pop()
        if role in out:
            continue
        out.add(role)
        if role == READONLY_ADMIN:
            todo.extend(r for r in ROLES if r.endswith("_READ"))
        todo.extend(ROLES.get(role, ()))
    return frozenset(out)


def allows(granted: frozenset[str], required: Iterable[str]) -> bool:
    """True when expanded granted roles satisfy any of the required roles (FULL_ADMIN allows all)."""
    if FULL_ADMIN in granted:
        return True
    return any(r in granted for r in required)
