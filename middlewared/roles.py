"""The role table (what each role includes) and role checks for credentials."""
from __future__ import annotations

from typing import Iterable

FULL_ADMIN = "FULL_ADMIN"
READONLY_ADMIN = "READONLY_ADMIN"
# Held by every logged-in session and never granted: methods any user may call about themselves
# (auth.me, auth.logout, their own API keys) declare it.
AUTHENTICATED = "AUTHENTICATED"

# role -> roles it includes (TrueNAS role.py, the part this daemon serves).
ROLES: dict[str, frozenset[str]] = {
    FULL_ADMIN: frozenset(),
    READONLY_ADMIN: frozenset(),  # every *_READ role, expanded below
    AUTHENTICATED: frozenset(),
    "VM_READ": frozenset(),
    # Typing on (and watching) a VM's serial console: less than changing the VM, more than reading it.
    "VM_CONSOLE": frozenset({"VM_READ"}),
    "VM_WRITE": frozenset({"VM_READ", "VM_CONSOLE"}),
    "VM_DEVICE_READ": frozenset({"VM_READ"}),
    "VM_DEVICE_WRITE": frozenset({"VM_WRITE", "VM_DEVICE_READ"}),
    "ACCOUNT_READ": frozenset(),
    "ACCOUNT_WRITE": frozenset({"ACCOUNT_READ"}),
    "API_KEY_READ": frozenset(),
    "API_KEY_WRITE": frozenset({"API_KEY_READ"}),
    "AUTH_SESSIONS_READ": frozenset(),
    "AUTH_SESSIONS_WRITE": frozenset({"AUTH_SESSIONS_READ"}),
    "AUDIT_READ": frozenset(),
    "FILESYSTEM_DATA_READ": frozenset(),
    "FILESYSTEM_DATA_WRITE": frozenset({"FILESYSTEM_DATA_READ"}),
}

# The Velocity REST API's permissions, one role each (plugins/velocity/README.md): held on a VM group
# through a scoped grant, or everywhere. What they also allow over JSON-RPC is what they include.
_VELOCITY: dict[str, frozenset[str]] = {
    **{f"VELOCITY_{name}": frozenset() for name in (
        "USER_CREATE", "USER_REMOVE", "USER_ASSIGN", "USER_REVOKE", "USER_VIEW", "USER_LIST",
        "GROUP_CREATE", "GROUP_REMOVE", "GROUP_VIEW", "POOL_LIST", "POOL_ASSIGN", "POOL_REVOKE",
        "MEDIA_CREATE", "MEDIA_LIST", "MEDIA_REMOVE", "NIC_LIST",
        "VM_CREATE", "VM_REMOVE", "VM_ALTER", "VM_INTERACT", "VM_STATE")},
    # Reading VMs is the one Velocity permission with an exact JSON-RPC counterpart.
    "VELOCITY_VM_VIEW": frozenset({"VM_READ", "VM_DEVICE_READ"}),
}
ROLES.update(_VELOCITY)

# Roles that may be scoped to a VM group or one VM (the rest only make sense host-wide).
SCOPABLE = frozenset({"VM_READ", "VM_CONSOLE", "VM_WRITE", "VM_DEVICE_READ", "VM_DEVICE_WRITE", *_VELOCITY})


def register_role(name: str, includes: Iterable[str] = ()) -> None:
    """Declare a role for a new namespace; declaring a name twice is a start-up error."""
    if name in ROLES:
        raise ValueError(f"role {name} is already declared")
    ROLES[name] = frozenset(includes)


def grantable() -> list[str]:
    """Roles an administrator may give to users and groups."""
    return sorted(r for r in ROLES if r != AUTHENTICATED)


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


def is_read_only(required: Iterable[str]) -> bool:
    """True when a method's roles are all reading ones (nothing it does changes state)."""
    return all(r.endswith("_READ") or r in (READONLY_ADMIN, AUTHENTICATED) for r in required)
