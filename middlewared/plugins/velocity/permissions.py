"""Velocity's permission catalogue on this daemon's roles.

Each Velocity permission is one role (``VELOCITY_*``, declared in the role table with what it includes
over JSON-RPC), held on a VM group through a scoped grant (``acl_grant``), or everywhere as an account role
when held on the root group (gid 0). A permission on a group covers the group's whole subtree. JSON-RPC
roles that already amount to a permission (``implied_by``) count as it; the plugin's README has the table.
"""
from __future__ import annotations

from dataclasses import dataclass

from middlewared import roles as roles_
from middlewared.credentials import Credentials
from middlewared.plugins.auth.scope import ScopeIndex

ROOT_GID = 0


@dataclass(frozen=True)
class Permission:
    """One entry of the catalogue."""

    pid: int
    name: str
    description: str
    role: str
    implied_by: tuple[str, ...] = ()


_ACCOUNT_W, _ACCOUNT_R = ("ACCOUNT_WRITE",), ("ACCOUNT_READ", "ACCOUNT_WRITE")
_VM_W, _VM_R = ("VM_WRITE",), ("VM_READ",)

# name, description, JSON-RPC roles that amount to it (what it gives over JSON-RPC: roles.py).
_TABLE: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("velocity.user.create", "Create new users (usernames are global)", _ACCOUNT_W),
    ("velocity.user.remove", "Remove users whose permissions lie within the group", _ACCOUNT_W),
    ("velocity.user.assign", "Grant permissions on the group (only ones the granter holds there)", _ACCOUNT_W),
    ("velocity.user.revoke", "Revoke permissions on the group (only ones the revoker holds there)", _ACCOUNT_W),
    ("velocity.user.view", "View other users holding permissions in the group", _ACCOUNT_R),
    ("velocity.user.list", "List all users", _ACCOUNT_R),
    ("velocity.group.create", "Create subgroups", _ACCOUNT_W),
    ("velocity.group.remove", "Remove subgroups", _ACCOUNT_W),
    ("velocity.group.view", "View the group, its members and their permissions", _ACCOUNT_R),
    ("velocity.pool.list", "List the media pools assigned to the group", ()),
    ("velocity.pool.assign", "Assign media pools to the group", ()),
    ("velocity.pool.revoke", "Revoke media pools from the group", ()),
    ("velocity.media.create", "Create and upload media in the group", ()),
    ("velocity.media.list", "List and download the media of the group", ()),
    ("velocity.media.remove", "Remove media of the group", ()),
    ("velocity.vm.create", "Create virtual machines in the group", _VM_W),
    ("velocity.vm.remove", "Remove virtual machines of the group", _VM_W),
    ("velocity.vm.alter", "Change CPUs, memory, media, NICs and displays of virtual machines",
     ("VM_DEVICE_WRITE",)),
    ("velocity.vm.view", "View virtual machines and their state", _VM_R),
    ("velocity.vm.interact", "Use the consoles of virtual machines", _VM_W),
    ("velocity.vm.state", "Start, stop, pause and resume virtual machines", _VM_W),
    ("velocity.nic.list", "List the host NICs available for BRIDGE NICs", ("VM_DEVICE_WRITE",)),
)

CATALOGUE: tuple[Permission, ...] = tuple(
    Permission(i + 1, name, description, "VELOCITY_" + name.removeprefix("velocity.").replace(".", "_").upper(),
               implied_by)
    for i, (name, description, implied_by) in enumerate(_TABLE))
BY_NAME: dict[str, Permission] = {p.name: p for p in CATALOGUE}
BY_ROLE: dict[str, Permission] = {p.role: p for p in CATALOGUE}
ROLE_NAMES = frozenset(BY_ROLE)

# The role table declares the roles (so that they can be granted over JSON-RPC too).
_UNDECLARED = [p.role for p in CATALOGUE if p.role not in roles_.ROLES]
if _UNDECLARED:
    raise RuntimeError(f"roles missing from the role table: {_UNDECLARED}")


def amounts_to(held: frozenset[str]) -> list[Permission]:
    """The permissions a set of (expanded) roles amounts to."""
    return [p for p in CATALOGUE if roles_.allows(held, (p.role, *p.implied_by))]


def held_on(index: ScopeIndex, credentials: Credentials, gid: int) -> frozenset[str]:
    """Roles credentials hold on a group: everywhere, plus scoped grants on it and its ancestors."""
    if gid == ROOT_GID:
        return credentials.roles
    return credentials.roles | index.roles_on_group(credentials, gid)


def has(index: ScopeIndex, credentials: Credentials, name: str, gid: int) -> bool:
    """Whether credentials hold a permission on a group (directly, inherited, or on the root group)."""
    permission = BY_NAME[name]
    return roles_.allows(held_on(index, credentials, gid), (permission.role, *permission.implied_by))


def anywhere(index: ScopeIndex, credentials: Credentials, name: str) -> bool:
    """Whether credentials hold a permission on at least one group (for actions without a target group)."""
    if has(index, credentials, name, ROOT_GID):
        return True
    return any(has(index, credentials, name, g) for g in index.parents)


def public(permission: Permission) -> dict[str, object]:
    """The ``{pid, name, description}`` form of the API."""
    return {"pid": permission.pid, "name": permission.name, "description": permission.description}
