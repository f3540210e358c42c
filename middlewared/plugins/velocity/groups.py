"""/u/group, /u/group/list: the group tree (VM groups under the root group 0) and who holds what on it."""
from __future__ import annotations

import errno
from typing import Any

from middlewared.errors import ValidationErrors
from middlewared.plugins.auth.acl import VM_GROUP_FIELDS
from middlewared.plugins.velocity import accounts, mediastore, members
from middlewared.plugins.velocity import permissions as P
from middlewared.plugins.velocity import schemas as S
from middlewared.plugins.velocity.errors import ErrorSpec as Err
from middlewared.plugins.velocity.endpoint import Call, Endpoint

GROUP = {"gid": S.GID, "parent_gid": S.GID, "name": S.string("Name, unique among its siblings.")}


async def group_post(call: Call) -> dict[str, Any]:
    gid = call.body["gid"]
    call.require_group(gid, 5110)
    call.require("velocity.group.view", gid, 5100)
    rows = await members.group_rows(call.velocity)
    holders = []
    for user in await accounts.users(call.middleware):
        row = await accounts.user_row(call.middleware, user["id"])
        credentials = await accounts.credentials_of(call.middleware, row) if row else None
        held = members.direct(credentials).get(gid) if credentials else None
        if held:
            holders.append({"uid": user["id"], "name": user["username"], "permissions": members.permissions(held)})
    return {**rows[gid], "memberships": holders}


async def group_put(call: Call) -> dict[str, Any]:
    name, parent = call.body["name"], call.body["parent_gid"]
    call.require_group(parent, 5210)
    call.require("velocity.group.create", parent, 5200)
    rows = await members.group_rows(call.velocity)
    if any(r["name"] == name and r["parent_gid"] == parent and r["gid"] != P.ROOT_GID for r in rows.values()):
        raise call.error(5220, f"Group {parent} already has a subgroup named {name}")
    created = await accounts.create_group(call.middleware, name, parent or None)
    return {"gid": created["id"], "name": created["name"], "parent_gid": created["parent"] or P.ROOT_GID}


def _subgroup(call: Call, base: int, root_code: int, why: str, permission: str) -> int:
    """The body's gid, checked: not the root group, existing (base + 10), permission held on its parent (base)."""
    gid: int = call.body["gid"]
    if gid == P.ROOT_GID:
        raise call.error(root_code, why)
    call.require_group(gid, base + 10)
    call.require(permission, call.velocity.index.parents.get(gid) or P.ROOT_GID, base)
    return gid


async def group_delete(call: Call) -> None:
    gid = _subgroup(call, 5300, 5320, "The root group cannot be removed", "velocity.group.remove")
    children = [g for g, p in call.velocity.index.parents.items() if p == gid]
    vms = [vm for vm, g in call.velocity.index.vm_group_of.items() if g == gid]
    media = await mediastore.media(call.middleware, gid=gid)
    if children or vms or media:
        raise call.error(5321, f"Group {gid} still has {len(children)} subgroup(s), {len(vms)} VM(s) and "
                               f"{len(media)} media: remove them first")
    await accounts.delete_group(call.middleware, gid)


async def group_patch(call: Call) -> dict[str, Any]:
    gid = _subgroup(call, 5400, 5421, "The root group has no quotas: it is the whole host", "velocity.group.create")
    try:
        changed = await accounts.set_quotas(call.middleware, gid, call.body["quotas"])
    except ValidationErrors as e:
        if any(error.errno == errno.EDQUOT for error in e):
            raise call.error(5420, "; ".join(error.errmsg for error in e)) from None
        raise
    return {"gid": gid, "quotas": changed["quotas"]}


async def group_list(call: Call) -> dict[str, Any]:
    direct = members.direct(call.credentials)
    shown: set[int] = set()
    for gid in direct:
        shown |= members.descendants(call.velocity, gid)
        shown |= {P.ROOT_GID, *call.velocity.index.ancestors(gid)}
    rows = await members.group_rows(call.velocity)
    return {"groups": [{**rows[gid], "permissions": members.permissions(direct.get(gid, frozenset()))}
                       for gid in sorted(shown) if gid in rows]}


_QUOTA = {"type": ["integer", "null"], "minimum": 0}
_QUOTA_FIELDS = {"cpus": {**_QUOTA, "description": "Virtual CPUs of all VMs together; null: none of its own."},
                 "memory_mib": {**_QUOTA, "description": "Memory in MiB of all VMs together; null: none of its own."}}
_QUOTAS = {"type": "object", "additionalProperties": False, "properties": _QUOTA_FIELDS,
           "description": "Quotas to set (omitted ones stay)."}
_QUOTAS_OUT = S.response("The group's own quotas (its ancestors' apply too).", _QUOTA_FIELDS)
_GID_ONLY = S.request("Which group.", {"gid": S.GID}, ("gid",))
_PERMISSIONS_OF = S.response("A user's permissions held directly on the group.", {
    "uid": S.UID, "name": S.string("Login name."), "permissions": S.PERMISSIONS})

ENDPOINTS = [
    Endpoint("POST", "/u/group", "A group and who holds which permissions on it.", group_post, request=_GID_ONLY,
             response=S.response("The group.", {**GROUP, "memberships": S.array(_PERMISSIONS_OF, "Holders.")}),
             errors=(Err(403, 5100, "velocity.group.view is needed on the group"), Err(404, 5110, "No such group")),
             audit=None),
    Endpoint("PUT", "/u/group", "Create a subgroup (needs velocity.group.create on the parent).", group_put,
             request=S.request("The new group.", {"name": VM_GROUP_FIELDS["name"], "parent_gid": S.GID},
                               ("name", "parent_gid")),
             response=S.response("The new group.", GROUP),
             errors=(Err(403, 5200, "velocity.group.create is needed on the parent"),
                     Err(404, 5210, "No such parent group"), Err(409, 5220, "The parent has a subgroup of that name"))),
    Endpoint("DELETE", "/u/group", "Remove an empty group (needs velocity.group.remove on its parent).",
             group_delete, request=_GID_ONLY,
             errors=(Err(403, 5300, "velocity.group.remove is needed on the parent"), Err(404, 5310, "No such group"),
                     Err(409, 5320, "The root group cannot be removed"),
                     Err(409, 5321, "The group still has subgroups, VMs or media"))),
    Endpoint("PATCH", "/u/group", "Set a group's CPU and memory quotas (needs velocity.group.create on its "
             "parent): they bound the VMs of the group and its subgroups, and cannot exceed an ancestor's.",
             group_patch, request=S.request("The quotas.", {"gid": S.GID, "quotas": _QUOTAS}, ("gid", "quotas")),
             response=S.response("The group's quotas now.", {"gid": S.GID, "quotas": _QUOTAS_OUT}),
             errors=(Err(403, 5400, "velocity.group.create is needed on the parent"), Err(404, 5410, "No such group"),
                     Err(406, 5420, "A quota would exceed an ancestor's"),
                     Err(409, 5421, "The root group has no quotas"))),
    Endpoint("POST", "/u/group/list", "Groups you hold permissions on, their ancestors and their subgroups.",
             group_list, request=S.request("Nothing.", {}),
             response=S.response("The groups.", {"groups": S.array(S.response("A group.", {
                 **GROUP, "permissions": S.PERMISSIONS}), "Groups, by gid.")}), audit=None),
]
