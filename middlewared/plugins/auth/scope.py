"""Grants scoped to VM groups (a tree) or single VMs, and the access policy that applies them.

Model: ``vm_group`` rows form a tree (``parent``); a VM belongs to at most one group (``vm_group_member``);
``acl_grant`` gives a user or an account group one scopable role on a VM group or on one VM. A grant on a
group covers every VM of that group and of its descendants. Global roles (user and group ``roles``) still
apply everywhere; scoped grants only widen access on the VMs they cover.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence, TypeGuard

from middlewared import roles as roles_
from middlewared.credentials import Credentials, ScopedGrant
from middlewared.plugin import EventSpec
from middlewared.plugins.auth.limits import FailureThrottle, RateLimiter, refuse

if TYPE_CHECKING:
    from middlewared.middleware import Connection, Method, Middleware

# Namespaces of records that belong to one VM, with the table linking a record id to its VM ("vm" column).
VM_OWNED = {"vm.device": "vm_device", "vm.snapshot": "vm_snapshot"}
# Namespaces whose records belong to VMs. A method of these whose first argument is an integer takes
# the id of one record; for VM-owned records a first argument object names its VM in "vm".
SCOPED_NAMESPACES = ("vm", *VM_OWNED)
# Unauthenticated methods the rate limit leaves alone: clients call them first on every connection (the
# official client asks auth.mechanism_choices before each API key login), and they reveal and cost nothing.
UNLIMITED = frozenset({"core.set_options", "auth.mechanism_choices"})


@dataclass(frozen=True)
class GrantRow:
    """One acl_grant row."""

    user_id: int | None
    group_id: int | None
    role: str
    scope_type: str
    scope_id: int


class ScopeIndex:
    """The VM group tree, VM memberships and grants, in memory (reloaded after every change)."""

    def __init__(self) -> None:
        self.parents: dict[int, int | None] = {}
        self.vm_group_of: dict[int, int] = {}
        self.grants: list[GrantRow] = []
        # (namespace, record id) -> VM, for records of VM_OWNED namespaces (devices, snapshots).
        self.owner_vm: dict[tuple[str, int], int] = {}

    async def load(self, middleware: "Middleware") -> None:
        """Read the three tables."""
        ds = middleware.datastore
        assert ds is not None
        self.parents = {r["id"]: r["parent"] for r in await ds.fetchall("SELECT id, parent FROM vm_group")}
        self.vm_group_of = {r["vm"]: r["vm_group"]
                            for r in await ds.fetchall("SELECT vm, vm_group FROM vm_group_member")}
        self.grants = [GrantRow(r["user_id"], r["group_id"], r["role"], "VM_GROUP" if r["vm_group"] else "VM",
                                r["vm_group"] or r["vm"]) for r in await ds.fetchall("SELECT * FROM acl_grant")]

    def grants_for(self, user_id: int, group_ids: Sequence[int]) -> tuple[ScopedGrant, ...]:
        """The scoped grants of a user, direct and through its account groups."""
        return tuple(ScopedGrant(roles_.expand([g.role]), g.scope_type, g.scope_id) for g in self.grants
                     if g.user_id == user_id or (g.group_id is not None and g.group_id in group_ids))

    def vms_in(self, scope_type: str, scope_id: int) -> list[int]:
        """The VMs a scope covers now: one VM, or every VM of a group and of the groups below it."""
        if scope_type == "VM":
            return [scope_id]
        out = []
        for vm_id, member_of in self.vm_group_of.items():
            group: int | None = member_of
            seen: set[int] = set()
            while group is not None and group not in seen and group != scope_id:
                seen.add(group)
                group = self.parents.get(group)
            if group == scope_id:
                out.append(vm_id)
        return sorted(out)

    def roles_on_vm(self, credentials: Credentials, vm_id: int) -> frozenset[str]:
        """Roles credentials hold on one VM through their scoped grants (its group and the group's ancestors)."""
        return self._roles_in(credentials, {("VM", vm_id)}, self.vm_group_of.get(vm_id))

    def roles_on_group(self, credentials: Credentials, group_id: int) -> frozenset[str]:
        """Roles credentials hold on one VM group through their scoped grants (on it or an ancestor)."""
        return self._roles_in(credentials, set(), group_id)

    def ancestors(self, group_id: int | None) -> list[int]:
        """A VM group and its ancestors, nearest first (empty for None or an unknown group)."""
        out: list[int] = []
        while group_id is not None and group_id in self.parents and group_id not in out:
            out.append(group_id)
            group_id = self.parents[group_id]
        return out

    def _roles_in(self, credentials: Credentials, scopes: set[tuple[str, int]], group: int | None) -> frozenset[str]:
        scopes |= {("VM_GROUP", g) for g in self.ancestors(group)}
        out: frozenset[str] = frozenset()
        for grant in credentials.grants:
            if (grant.scope_type, grant.scope_id) in scopes:
                out |= grant.roles
        return out


class ScopePolicy:
    """The middleware's AccessPolicy: scoped grants, per-VM checks, and unauthenticated-call limits."""

    def __init__(self, middleware: "Middleware") -> None:
        self.middleware = middleware
        self.index = ScopeIndex()
        auth = middleware.config.auth
        self.limiter = RateLimiter(auth.rate_limit_calls, auth.rate_limit_period)
        self.failures = FailureThrottle(auth.failed_login_delay, auth.failed_logins_per_user,
                                        auth.failed_logins_per_address)

    async def allows(self, method: "Method", credentials: Credentials, params: Sequence[Any]) -> bool:
        """Scoped roles allow a call on VMs they cover; without a VM argument, only reading calls."""
        scoped = credentials.scoped_roles()
        required = method.spec.roles
        if not roles_.allows(scoped, required):
            return False
        targets = await self._targets(method, params)
        if targets is None:
            # Host facts, filtered queries and core.*: the role must be a reading one.
            return any(r in scoped and r.endswith("_READ") for r in required)
        return bool(targets) and all(roles_.allows(self.index.roles_on_vm(credentials, vm), required)
                                     for vm in targets)

    async def _targets(self, method: "Method", params: Sequence[Any]) -> list[int] | None:
        """The VMs a call acts on; None when it takes no record; [] when they cannot be told."""
        namespace = method.name.rpartition(".")[0]
        if namespace not in SCOPED_NAMESPACES:
            return None
        args = method.arguments.args
        first = args[0].schema.get("type") if args else None
        value = params[0] if params else None
        if first == "integer":
            if not _is_id(value):
                return []
            vm = value if namespace == "vm" else await self._owner_vm(namespace, value)
            targets = [] if vm is None else [vm]
            moved = params[1].get("vm") if len(params) > 1 and isinstance(params[1], dict) else None
            return targets + [moved] if _is_id(moved) and targets else targets
        if namespace in VM_OWNED and isinstance(value, dict) and "vm" in value:
            return [value["vm"]] if _is_id(value["vm"]) else []
        return None

    async def _owner_vm(self, namespace: str, record_id: int) -> int | None:
        key = (namespace, record_id)
        if key not in self.index.owner_vm:
            ds = self.middleware.db
            rows = await ds.fetchall(f"SELECT vm FROM {VM_OWNED[namespace]} WHERE id = ?", (record_id,))
            if not rows:
                return None
            self.index.owner_vm[key] = rows[0]["vm"]
        return self.index.owner_vm[key]

    def can_subscribe(self, event: EventSpec, credentials: Credentials) -> bool:
        """Events of VM collections go to scoped readers, filtered per VM by visible()."""
        return event.name.rpartition(".")[0] in SCOPED_NAMESPACES and \
            any(r.endswith("_READ") and r in credentials.scoped_roles() for r in event.roles)

    def visible(self, collection: str, row: dict[str, Any], credentials: Credentials) -> bool:
        """A VM or device record (or its event payload) is visible with the collection's role on its VM."""
        event = self.middleware.events.get(collection)
        vm = self._row_vm(collection, row)
        if event is None or vm is None:
            return False
        return roles_.allows(self.index.roles_on_vm(credentials, vm), event.roles)

    def _row_vm(self, collection: str, row: dict[str, Any]) -> int | None:
        if collection == "vm.query":
            vm = row.get("id")
            return vm if _is_id(vm) else None
        namespace = collection.removesuffix(".query")
        if namespace in VM_OWNED:
            fields = row.get("fields") if "msg" in row else row
            vm = fields.get("vm") if isinstance(fields, dict) else None
            if _is_id(row.get("id")) and _is_id(vm):
                self.index.owner_vm[(namespace, row["id"])] = vm
            return vm if _is_id(vm) else self.index.owner_vm.get((namespace, row.get("id", -1)))
        return None

    async def throttle(self, method: "Method", app: "Connection") -> None:
        """Unauthenticated calls: 20 per 60 s per address, all methods together (configurable), then
        EBUSY for a whole period."""
        if method.name not in UNLIMITED and not self.limiter.hit(app.address):
            await refuse()


def _is_id(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def policy(middleware: "Middleware") -> ScopePolicy:
    """The auth plugin's policy instance."""
    assert isinstance(middleware.policy, ScopePolicy), "the auth plugin is not set up"
    return middleware.policy


def decode_roles(text: str) -> list[str]:
    """A roles column (JSON list)."""
    value = json.loads(text or "[]")
    return [str(v) for v in value] if isinstance(value, list) else []
