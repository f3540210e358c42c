"""Who holds which Velocity permissions directly on which group (memberships, in Velocity's words)."""
from __future__ import annotations

from typing import Any

from middlewared import roles as roles_
from middlewared.credentials import Credentials
from middlewared.plugins.velocity import accounts
from middlewared.plugins.velocity import permissions as P
from middlewared.plugins.velocity.endpoint import Velocity


def direct(credentials: Credentials) -> dict[int, frozenset[str]]:
    """gid -> roles held directly there: account roles on the root group, scoped grants on VM groups."""
    out: dict[int, frozenset[str]] = {}
    if credentials.roles - {roles_.AUTHENTICATED}:
        out[P.ROOT_GID] = credentials.roles
    for grant in credentials.grants:
        if grant.scope_type == "VM_GROUP":
            out[grant.scope_id] = out.get(grant.scope_id, frozenset()) | grant.roles
    return {gid: held for gid, held in out.items() if P.amounts_to(held)}


def permissions(held: frozenset[str]) -> list[dict[str, object]]:
    return [P.public(p) for p in P.amounts_to(held)]


async def group_rows(velocity: Velocity) -> dict[int, dict[str, Any]]:
    """gid -> ``{gid, parent_gid, name}`` for every group, the root group included."""
    out = {P.ROOT_GID: {"gid": P.ROOT_GID, "parent_gid": P.ROOT_GID, "name": "root"}}
    for row in await accounts.groups(velocity.middleware):
        out[row["id"]] = {"gid": row["id"], "parent_gid": row["parent"] or P.ROOT_GID, "name": row["name"]}
    return out


def descendants(velocity: Velocity, gid: int) -> set[int]:
    """A group's subtree (itself included); the root group's is every group."""
    parents = velocity.index.parents
    if gid == P.ROOT_GID:
        return {P.ROOT_GID, *parents}
    return {g for g in parents if gid in velocity.index.ancestors(g)}
