"""Turn a request's device changes into a validated plan: merge, defaults, per-type checks, running rules."""
from __future__ import annotations

import errno
from typing import Any, Callable, Hashable, Iterable, Mapping, Sequence

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange, DevicePlan
from middlewared.plugins.vm_device.host import Host
from middlewared.plugins.vm_device.model import Proposal
from middlewared.plugins.vm_device.registry import Registry
from middlewared.plugins.vm_device.resources import Action, RemoveFile, Resources
from middlewared.plugins.vm.model import VMState


# Whether a device of another VM holds a claim (Device.claims: a MAC, a display port, a volume).
HeldElsewhere = Callable[[Hashable], bool]


def held_among(types: Registry, devices: Iterable[Mapping[str, Any]]) -> HeldElsewhere:
    """HeldElsewhere over the attributes of other VMs' devices given as a list."""
    return {claim for attributes in devices for claim in types.claims(attributes)}.__contains__


class Check:
    """What a device type's validation sees: the VM, its other devices, other VMs' claims, the host."""

    def __init__(self, types: Registry, vm: Mapping[str, Any], verrors: ValidationErrors, host: Host,
                 unchanged: Sequence[Mapping[str, Any]], held_elsewhere: HeldElsewhere) -> None:
        self.vm_name = str(vm.get("name", ""))
        self.verrors = verrors
        self.host = host
        self._types = types
        # Attributes of this VM's devices that the request leaves alone, then of those it validated so far.
        self._siblings: list[Mapping[str, Any]] = []
        self._sibling_claims: set[Hashable] = set()
        for attributes in unchanged:
            self.accept(attributes)
        self.held_elsewhere = held_elsewhere
        self.actions: list[Action] = []

    def error(self, p: Proposal, key: str | None, message: str, errno_: int = errno.EINVAL) -> None:
        """Record an error about one attribute of a proposal (or the whole device when key is None)."""
        self.verrors.add(f"{p.attribute}.attributes.{key}" if key else p.attribute, message, errno_)

    def siblings(self, dtype: str | None = None) -> list[Mapping[str, Any]]:
        """Attributes of the VM's other devices (unchanged ones and those validated before), by dtype."""
        return [a for a in self._siblings if dtype is None or a.get("dtype") == dtype]

    def accept(self, attributes: Mapping[str, Any]) -> None:
        """A validated device becomes a sibling of the next ones."""
        self._siblings.append(attributes)
        self._sibling_claims |= self._types.claims(attributes)

    def held(self, claim: Hashable) -> bool:
        """Whether a device of another VM, or a sibling, holds a claim."""
        return claim in self._sibling_claims or self.held_elsewhere(claim)

    def add_action(self, action: Action) -> None:
        """A host change to make once the whole request is valid."""
        self.actions.append(action)


def _proposal(types: Registry, change: DeviceChange, stored: Mapping[int, Mapping[str, Any]],
              verrors: ValidationErrors) -> tuple[Proposal, bool] | None:
    """The proposal of one change and whether it changes nothing, or None (errors recorded)."""
    data, prefix = change.data, change.attribute
    device_id = data.get("id")
    old = stored.get(device_id) if device_id is not None else None
    given = dict(data.get("attributes") or {})
    old_attrs = old["attributes"] if old else {}
    dtype = given.get("dtype", old_attrs.get("dtype"))
    device_type = types.get(dtype)
    if device_type is None:
        verrors.add(f"{prefix}.attributes.dtype", "Input should be " + ", ".join(f'"{n}"' for n in types.names))
        return None
    if old and dtype != old_attrs["dtype"]:
        verrors.add(f"{prefix}.attributes.dtype", "The type of a device cannot change; delete the device and "
                                                  "create another")
        return None
    merged = device_type.merge(old_attrs, given) if old else given
    errors = device_type.schema_errors(merged, f"{prefix}.attributes")
    if errors:
        verrors.errors.extend(errors)
        return None
    attributes = device_type.with_defaults(merged)
    order = data.get("order")
    if order is None:
        order = old["order"] if old and "order" not in data else device_type.default_order
    proposal = Proposal(prefix, device_id, order, attributes, old_attrs or None, old["order"] if old else None)
    unchanged = old is not None and attributes == old_attrs and order == old["order"]
    return proposal, unchanged


async def make_plan(types: Registry, vm: Mapping[str, Any], current: Sequence[dict[str, Any]],
                    changes: Sequence[DeviceChange], remove: Sequence[int], verrors: ValidationErrors,
                    host: Host, held_elsewhere: HeldElsewhere, force: bool) -> DevicePlan:
    """Validate every change against the VM's other devices, other VMs and the host, all errors at once."""
    stored = {d["id"]: d for d in current}
    proposals: list[tuple[Proposal, bool]] = []
    for change in changes:
        made = _proposal(types, change, stored, verrors)
        if made is not None:
            proposals.append(made)
    changing = {p.id for p, same in proposals if p.id is not None and not same} | set(remove)
    check = Check(types, vm, verrors, host, [d["attributes"] for d in current if d["id"] not in changing],
                  held_elsewhere)
    rows: list[dict[str, Any]] = []
    for p, same in proposals:
        attributes = p.attributes if same else await types[p.dtype].normalize(p, check)
        if not same:
            check.accept(attributes)
        row = {"order": p.order, "attributes": attributes}
        rows.append({"id": p.id, **row} if p.id is not None else row)
    for device_id in remove:
        typed = types.typed(stored[device_id]["attributes"]) if device_id in stored else None
        for path in typed.owned_files() if typed is not None else ():
            check.add_action(RemoveFile(path))
    plan = DevicePlan(rows=rows, remove=list(remove), resources=Resources(check.actions))
    if vm.get("status", {}).get("state", VMState.STOPPED) != VMState.STOPPED:
        _running_rules(types, plan, [p for p, same in proposals if not same], force)
    return plan


def _running_rules(types: Registry, plan: DevicePlan, changed: list[Proposal], force: bool) -> None:
    """What a running VM allows: live-changeable changes, and deletions with force."""
    by_id = {row.get("id"): row for row in plan.rows}
    for p in changed:
        if p.id is None:
            plan.busy.append(f"a {p.dtype} device cannot be added until it is stopped")
            continue
        new = by_id[p.id]
        assert p.old is not None
        device_class = types[p.dtype]
        old_device, new_device = device_class.from_attributes(p.old), device_class.from_attributes(new["attributes"])
        if p.order == p.old_order and old_device.live_changeable(new_device):
            plan.live.append(p.id)
        else:
            plan.busy.append(f"its {p.dtype} device {p.id} cannot be changed until it is stopped")
    if plan.remove and not force:
        ids = ", ".join(str(i) for i in plan.remove)
        plan.busy.append(f"deleting device {ids} needs force (the running guest keeps it until it stops)")
