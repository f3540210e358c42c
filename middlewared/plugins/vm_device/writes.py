"""Every write of device rows, on one path: vm.device.create/update/delete and the devices of vm.create/update.

Validate into a plan under one lock (MACs and display ports are unique across VMs, so two plans must not pick the
same one), refuse what a running VM cannot take, create host resources, store the rows inside the VM's
transaction (the VM service defines the domain from them in that transaction), then send vm.device.query events.
"""
from __future__ import annotations

import asyncio
import sqlite3
from typing import TYPE_CHECKING, Any, Awaitable, Callable, Mapping, Sequence, TypeVar

import libvirt

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.devices_api import (Commit, DeviceChange, DevicePlan, DeviceRequest, StoredDevices,
                                                StoreDevices)
from middlewared.plugins.vm.model import VMRecord
from middlewared.plugins.vm_device import intents, layout, rows
from middlewared.plugins.vm_device.model import as_snapshot

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords
    from middlewared.plugins.vm_device.manager import DeviceManager

T = TypeVar("T")


class DeviceWrites:
    """The write path of device rows (see the module docstring)."""

    def __init__(self, manager: "DeviceManager") -> None:
        self.manager = manager
        self.lock = asyncio.Lock()

    @property
    def vms(self) -> "VMRecords":
        return self.manager.vms

    async def change(self, vm_id: int, changes: Sequence[DeviceChange], remove: Sequence[int] = (), *,
                     force: bool = False) -> list[dict[str, Any]]:
        """vm.device.*: create, change and delete devices of one VM, the domain redefined in the same
        transaction (and live changes applied to the running domain). Returns the stored rows of `changes`."""
        async with self.lock:
            vm = await self.vms.get_instance(vm_id)
            current = list((await self.vms.stored_vms())[vm_id]["devices"])
            verrors = ValidationErrors()
            plan = await self.manager.plan(vm, current, changes, remove, verrors, force=force)
            verrors.check()
            plan.check_busy(vm["name"])
            record = VMRecord.from_row(vm)
            store, stored = self._store_step(current, plan)
            await self._provisioned(plan, lambda: self.vms.redefine(record, store))
        return stored

    async def write(self, read: Callable[[], Awaitable[DeviceRequest]], commit: Commit[T]) -> T:
        """vm.create/vm.update's devices (see DeviceSupport.write)."""
        async with self.lock:
            request = await read()
            verrors, current = request.verrors, request.current
            if request.devices is None:
                # The devices stay as they are; the domain is redefined from them with the host as it is now.
                verrors.check()
                host = await self.manager.snapshot(request.vm.get("id"))
                return await commit(lambda db, conn, vm: StoredDevices(current, host))
            if request.new:
                changes = [DeviceChange(f"vm_create.devices.{i}", d) for i, d in enumerate(request.devices)]
                remove: list[int] = []
            else:
                changes, remove = rows.changes_of_update(current, request.devices, verrors)
            plan = await self.manager.plan(request.vm, current, changes, remove, verrors)
            verrors.check()
            plan.check_busy(str(request.vm["name"]))
            store, stored = self._store_step(current, plan)
            result = await self._provisioned(plan, lambda: commit(store))
        self.announce(current, stored, plan.remove)
        return result

    def _store_step(self, current: Sequence[dict[str, Any]], plan: DevicePlan
                    ) -> tuple[StoreDevices, list[dict[str, Any]]]:
        """The step that stores a plan inside the VM's transaction, and the list it fills with the stored rows."""
        stored: list[dict[str, Any]] = []

        def store(db: sqlite3.Connection, conn: libvirt.virConnect, vm: VMRecord) -> StoredDevices:
            devices, rows_ = rows.store_plan(db, vm.id, current, plan)
            stored[:] = rows_
            # The rows own the volumes and files they name from this commit on.
            intents.claim(db, [row["attributes"] for row in rows_])
            if plan.live:
                dom = conn.lookupByName(vm.domain_name)
                flags = libvirt.VIR_DOMAIN_AFFECT_LIVE | libvirt.VIR_DOMAIN_AFFECT_CONFIG
                for device_id in plan.live:
                    for xml in layout.device_xml(devices, as_snapshot(plan.host), device_id, self.manager.types):
                        dom.updateDeviceFlags(xml, flags)
            return StoredDevices(devices, plan.host)
        return store, stored

    async def _provisioned(self, plan: DevicePlan, commit: Callable[[], Awaitable[T]]) -> T:
        """Create the plan's volumes and files, then commit; remove them again if the commit fails."""
        await plan.resources.provision(self.manager.hv, self.manager.intents)
        try:
            return await commit()
        except BaseException:
            await plan.resources.undo(self.manager.hv, self.manager.intents)
            raise

    def announce(self, before: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]],
                 removed: Sequence[int]) -> None:
        """The vm.device.query events of a stored change."""
        rows.announce(self.vms.middleware, self.manager.public, before, stored, removed)
