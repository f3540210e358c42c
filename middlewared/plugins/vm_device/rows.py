"""The vm_device table: a plan's rows stored in the VM's transaction, vm.update's device list read as changes,
and the vm.device.query events of a change."""
from __future__ import annotations

import errno
import json
import sqlite3
from typing import TYPE_CHECKING, Any, Callable, Mapping, Sequence

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange, DevicePlan
from middlewared.plugins.vm.model import device_order

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


def changes_of_update(current: Sequence[Mapping[str, Any]], devices_in: Sequence[Mapping[str, Any]],
                      verrors: ValidationErrors) -> tuple[list[DeviceChange], list[int]]:
    """vm.update's devices: entries with an id change that device, without one create a device, and
    stored devices left out are removed."""
    existing = {d["id"] for d in current}
    changes, seen = [], set()
    for index, dev in enumerate(devices_in):
        attribute = f"vm_update.devices.{index}"
        device_id = dev.get("id")
        if device_id is not None and device_id not in existing:
            verrors.add(f"{attribute}.id", f"This VM has no device {device_id}", errno.ENOENT)
            continue
        if device_id is not None and device_id in seen:
            verrors.add(f"{attribute}.id", f"Device {device_id} is listed twice", errno.EINVAL)
            continue
        seen.add(device_id)
        changes.append(DeviceChange(attribute, dev))
    return changes, [i for i in sorted(existing) if i not in seen]


def store_plan(db: sqlite3.Connection, vm_id: int, current: Sequence[dict[str, Any]], plan: DevicePlan
               ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Store a plan's rows and deletions; return (all devices of the VM in order, the stored rows)."""
    for device_id in plan.remove:
        db.execute("DELETE FROM vm_device WHERE id = ? AND vm = ?", (device_id, vm_id))
    stored = []
    for row in plan.rows:
        values = (row["attributes"]["dtype"], json.dumps(row["attributes"]), row.get("order"))
        if row.get("id") is None:
            cur = db.execute('INSERT INTO vm_device (dtype, attributes, "order", vm) VALUES (?, ?, ?, ?)',
                             (*values, vm_id))
            stored.append({**row, "id": cur.lastrowid, "vm": vm_id})
        else:
            db.execute('UPDATE vm_device SET dtype = ?, attributes = ?, "order" = ? WHERE id = ? AND vm = ?',
                       (*values, row["id"], vm_id))
            stored.append({**row, "vm": vm_id})
    replaced = set(plan.remove) | {row["id"] for row in stored}
    devices = [d for d in current if d["id"] not in replaced] + stored
    return sorted(devices, key=device_order), stored



def announce(middleware: "Middleware", public: Callable[[Mapping[str, Any]], dict[str, Any]],
             before: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]], removed: Sequence[int]) -> None:
    """vm.device.query events for the devices a VM change touched (as readers see them)."""
    old = {d["id"]: public(d) for d in before}
    for row in stored:
        shown = public(row)
        if row["id"] not in old:
            middleware.send_event("vm.device.query", "ADDED", id=row["id"], fields=shown)
        elif old[row["id"]] != shown:
            middleware.send_event("vm.device.query", "CHANGED", id=row["id"], fields=shown)
    for device_id in removed:
        middleware.send_event("vm.device.query", "REMOVED", id=device_id)
