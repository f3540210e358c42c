"""vm_group.* (a tree of VM groups and their VMs) and acl.* (roles granted on a VM group or one VM)."""
from __future__ import annotations

import errno
import sqlite3
from typing import Any, Callable

from middlewared import roles as roles_
from middlewared.crud import CRUDService, crud_schemas
from middlewared.errors import ValidationErrors
from middlewared.plugins.auth import quotas
from middlewared.plugins.auth.login import refresh_sessions
from middlewared.plugins.auth.scope import policy
from middlewared.service import api_method

_ID_OR_NULL: dict[str, Any] = {"type": ["integer", "null"]}

VM_GROUP_FIELDS: dict[str, Any] = {
    "name": {"type": "string", "minLength": 1, "maxLength": 120, "description": "Name, unique among siblings."},
    "parent": {**_ID_OR_NULL, "description": "Parent VM group id (null: a top-level group)."},
    "description": {"type": "string", "description": "Free text."},
    "vms": {"type": "array", "items": {"type": "integer", "description": "A VM id."}, "uniqueItems": True,
            "description": "VMs in this group (a VM is in one group at most: listing it here moves it)."},
    "quotas": {"type": "object", "additionalProperties": False,
               "description": "Limits on what the VMs of this group and its subgroups take together; a quota "
                              "cannot exceed an ancestor's.",
               "properties": {
                   "cpus": {**_ID_OR_NULL, "minimum": 0,
                            "description": "Virtual CPUs (sockets x cores x threads); null: no quota of its own."},
                   "memory_mib": {**_ID_OR_NULL, "minimum": 0,
                                  "description": "Memory in MiB; null: no quota of its own."}}},
}
ACL_FIELDS: dict[str, Any] = {
    "user": {**_ID_OR_NULL, "description": "The user granted the role (or null with group)."},
    "group": {**_ID_OR_NULL, "description": "The account group granted the role (or null with user)."},
    "role": {"type": "string", "enum": sorted(roles_.SCOPABLE), "description": "The role (with what it includes)."},
    "vm_group": {**_ID_OR_NULL, "description": "Scope: this VM group and its descendants (or null with vm)."},
    "vm": {**_ID_OR_NULL, "description": "Scope: this one VM (or null with vm_group)."},
}


def _entry(fields: dict[str, Any], what: str) -> dict[str, Any]:
    return {"title": "entry", "type": "object", "description": what,
            "properties": {"id": {"type": "integer", "description": "Id."}, **fields}}


class AccessCRUD(CRUDService):
    """Records that decide who may do what (accounts, groups, grants, VM groups).

    Every write is one transaction, with database refusals (foreign keys, uniqueness) reported as
    validation errors; then the scope index is reloaded and live sessions get their new credentials.
    """

    role_prefix = "ACCOUNT"
    table: str  # the table do_delete removes rows from

    async def write(self, fn: Callable[[sqlite3.Connection], Any], attribute: str) -> Any:
        ds = self.middleware.db
        try:
            result = await ds.transaction(fn)
        except sqlite3.IntegrityError as e:
            verrors = ValidationErrors()
            verrors.add(attribute, f"Refused by the database: {e}", errno.EINVAL)
            raise verrors from None
        await policy(self.middleware).index.load(self.middleware)
        await refresh_sessions(self.middleware)
        return result

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        await self.get_instance(id_)
        table = self.table
        await self.write(lambda db: db.execute(f"DELETE FROM {table} WHERE id = ?", (id_,)), f"{self.namespace}.id")
        return True


VM_GROUP_CRUD = crud_schemas(
    "vm_group", "VM group", "ACCOUNT", _entry(VM_GROUP_FIELDS, "A VM group."),
    {"type": "object", "additionalProperties": False, "required": ["name"], "description": "The new VM group.",
     "properties": VM_GROUP_FIELDS},
    {"type": "object", "additionalProperties": False, "description": "Fields to change.",
     "properties": VM_GROUP_FIELDS})


class VMGroupService(AccessCRUD):
    """VM groups: a tree; grants on a group apply to its VMs and to every group below it."""

    namespace = "vm_group"
    verbose_name = "VM group"
    table = "vm_group"
    entry_schema = VM_GROUP_CRUD.entry

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=VM_GROUP_CRUD.query, result=VM_GROUP_CRUD.query_result, roles=VM_GROUP_CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """VM groups matching the filters, each with its parent, quotas and the VMs in it."""
        return await super().query(filters, options, app=app)

    @api_method(params=VM_GROUP_CRUD.get_instance, result=VM_GROUP_CRUD.entry, roles=VM_GROUP_CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One VM group by id; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=VM_GROUP_CRUD.create, result=VM_GROUP_CRUD.entry, roles=VM_GROUP_CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a VM group, optionally below a parent and holding VMs (a VM listed here leaves its former group);
        refused when the VMs would break a quota on the way up."""
        return await super().create(data)

    @api_method(params=VM_GROUP_CRUD.update, result=VM_GROUP_CRUD.entry, roles=VM_GROUP_CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a VM group's name, parent, description, quotas or VMs (never placing it below itself); sessions get
        the grants it implies at once."""
        return await super().update(id_, data)

    @api_method(params=VM_GROUP_CRUD.delete, result=VM_GROUP_CRUD.deleted, roles=VM_GROUP_CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete a VM group; the grants scoped to it go with it and its VMs belong to no group."""
        return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        ds = self.middleware.db
        groups = await ds.fetchall("SELECT * FROM vm_group ORDER BY id")
        members = await ds.fetchall("SELECT vm, vm_group FROM vm_group_member ORDER BY vm")
        return [{"id": g["id"], "name": g["name"], "parent": g["parent"], "description": g["description"],
                 "quotas": {"cpus": g["quota_cpus"], "memory_mib": g["quota_memory_mib"]},
                 "vms": [m["vm"] for m in members if m["vm_group"] == g["id"]]} for g in groups]

    async def quota_excess(self, group: int | None, added: quotas.Usage, leaving: tuple[int, ...] = ()) -> str | None:
        """Why VMs taking `added` more in a group would break a quota on its path up (None when they fit)."""
        result: str | None = await self.middleware.db.transaction(
            lambda db: quotas.problem(db, group, added, leaving))
        return result

    async def _check_limits(self, data: dict[str, Any], parent: int | None, schema: str) -> None:
        if not data.get("quotas"):
            return
        rows = await self.rows()
        problem = quotas.above_parent({r["id"]: r["parent"] for r in rows}, {r["id"]: r["quotas"] for r in rows},
                                      parent, data["quotas"])
        if problem:
            verrors = ValidationErrors()
            verrors.add(f"{schema}.quotas", f"Refused: {problem}", errno.EDQUOT)
            raise verrors

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        await self._check_limits(data, data.get("parent"), "vm_group_create")
        limits = data.get("quotas") or {}

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute("INSERT INTO vm_group (name, parent, description, quota_cpus, quota_memory_mib)"
                             " VALUES (?, ?, ?, ?, ?)", (data["name"], data.get("parent"), data.get("description", ""),
                                                         limits.get("cpus"), limits.get("memory_mib")))
            group_id = int(cur.lastrowid or 0)
            _set_members(db, group_id, data.get("vms", []))
            _fits(db, group_id, "vm_group_create.vms")
            return group_id
        return await self.get_instance(await self.write(insert, "vm_group_create"))

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        old = await self.get_instance(id_)
        new = {**old, **data, "quotas": {**old["quotas"], **(data.get("quotas") or {})}}
        if new["parent"] is not None and id_ in self._ancestors(new["parent"], await self.rows()):
            verrors = ValidationErrors()
            verrors.add("vm_group_update.parent", "A group cannot be placed below itself", errno.EINVAL)
            raise verrors
        await self._check_limits(data, new["parent"], "vm_group_update")

        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE vm_group SET name = ?, parent = ?, description = ?, quota_cpus = ?,"
                       " quota_memory_mib = ? WHERE id = ?",
                       (new["name"], new["parent"], new["description"], new["quotas"]["cpus"],
                        new["quotas"]["memory_mib"], id_))
            if "vms" in data:
                db.execute("DELETE FROM vm_group_member WHERE vm_group = ?", (id_,))
                _set_members(db, id_, data["vms"])
            if "vms" in data or "parent" in data:
                _fits(db, id_, "vm_group_update.vms")
        await self.write(update, "vm_group_update")
        return await self.get_instance(id_)

    @staticmethod
    def _ancestors(group_id: int, rows: list[dict[str, Any]]) -> set[int]:
        parents = {r["id"]: r["parent"] for r in rows}
        out: set[int] = set()
        current: int | None = group_id
        while current is not None and current not in out:
            out.add(current)
            current = parents.get(current)
        return out


def _fits(db: sqlite3.Connection, group_id: int, attribute: str) -> None:
    """Raise (rolling the transaction back) when the group's VMs now break a quota on its path up."""
    problem = quotas.problem(db, group_id)
    if problem:
        verrors = ValidationErrors()
        verrors.add(attribute, f"Refused: {problem}", errno.EDQUOT)
        raise verrors


def _set_members(db: sqlite3.Connection, group_id: int, vms: list[int]) -> None:
    for vm in vms:
        db.execute("INSERT OR REPLACE INTO vm_group_member (vm, vm_group) VALUES (?, ?)", (vm, group_id))


ACL_CRUD = crud_schemas(
    "acl", "Grant", "ACCOUNT", _entry(ACL_FIELDS, "A scoped grant."),
    {"type": "object", "additionalProperties": False, "required": ["role"],
     "description": "The new grant: one of user/group, one of vm_group/vm.", "properties": ACL_FIELDS},
    {"type": "object", "additionalProperties": False, "description": "Fields to change.", "properties": ACL_FIELDS})


class ACLService(AccessCRUD):
    """Grants of one scopable role to a user or account group, on a VM group (and below) or on one VM."""

    namespace = "acl"
    verbose_name = "Grant"
    table = "acl_grant"
    entry_schema = ACL_CRUD.entry

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=ACL_CRUD.query, result=ACL_CRUD.query_result, roles=ACL_CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """Grants matching the filters: who (user or account group) holds which role on which VM group or VM."""
        return await super().query(filters, options, app=app)

    @api_method(params=ACL_CRUD.get_instance, result=ACL_CRUD.entry, roles=ACL_CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One grant by id; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=ACL_CRUD.create, result=ACL_CRUD.entry, roles=ACL_CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Grant a scopable role to one user or account group, on one VM group (and the groups below it) or on one VM;
        sessions of those it reaches get it at once."""
        return await super().create(data)

    @api_method(params=ACL_CRUD.update, result=ACL_CRUD.entry, roles=ACL_CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a grant's holder, role or scope; sessions of those it reaches get the change at once."""
        return await super().update(id_, data)

    @api_method(params=ACL_CRUD.delete, result=ACL_CRUD.deleted, roles=ACL_CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Revoke a grant; sessions that held it lose it at once."""
        return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        ds = self.middleware.db
        return [{"id": r["id"], "user": r["user_id"], "group": r["group_id"], "role": r["role"],
                 "vm_group": r["vm_group"], "vm": r["vm"]}
                for r in await ds.fetchall("SELECT * FROM acl_grant ORDER BY id")]

    def _check(self, data: dict[str, Any], schema: str) -> None:
        verrors = ValidationErrors()
        if (data.get("user") is None) == (data.get("group") is None):
            verrors.add(f"{schema}.user", "Name exactly one of user and group", errno.EINVAL)
        if (data.get("vm_group") is None) == (data.get("vm") is None):
            verrors.add(f"{schema}.vm_group", "Name exactly one of vm_group and vm", errno.EINVAL)
        verrors.check()

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        self._check(data, "acl_create")
        values = (data.get("user"), data.get("group"), data["role"], data.get("vm_group"), data.get("vm"))

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute("INSERT INTO acl_grant (user_id, group_id, role, vm_group, vm) VALUES (?, ?, ?, ?, ?)",
                             values)
            return int(cur.lastrowid or 0)
        return await self.get_instance(await self.write(insert, "acl_create"))

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        new = {**await self.get_instance(id_), **data}
        self._check(new, "acl_update")
        values = (new["user"], new["group"], new["role"], new["vm_group"], new["vm"], id_)
        await self.write(lambda db: db.execute("UPDATE acl_grant SET user_id = ?, group_id = ?, role = ?,"
                                               " vm_group = ?, vm = ? WHERE id = ?", values), "acl_update")
        return await self.get_instance(id_)

