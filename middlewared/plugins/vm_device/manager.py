"""The device plugin's side of the VM service (DeviceSupport): plans, resources, XML, start checks, clones."""
from __future__ import annotations

import asyncio
import errno
import sqlite3
import logging
import os
from typing import Any, Collection, Mapping, Sequence

from lxml import etree

from middlewared.config import StorageConfig
from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange, DeviceHost, DevicePlan
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.model import VMState, device_order, domain_name
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm_device import display, layout, nic, rows
from middlewared.plugins.vm_device.host import Host
from middlewared.plugins.vm_device.model import HostSnapshot
from middlewared.plugins.vm_device.planning import make_plan
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry

logger = logging.getLogger(__name__)


class DeviceManager:
    """Implements DeviceSupport for the VM service; vm.device.* uses it too."""

    def __init__(self, vms: VMRecords, storage: StorageConfig, types: Registry = DEVICE_TYPES) -> None:
        self.vms = vms
        self.storage = storage
        self.types = types
        # The start-up task (pool set-up once libvirt answers).
        self.starting: asyncio.Task[None] | None = None

    @property
    def hv(self) -> Hypervisor:
        return self.vms.hypervisor

    def _running(self, record: Mapping[str, Any]) -> bool:
        return self.hv.status(domain_name(record["id"], record["name"])).state != VMState.STOPPED

    async def host(self, vm_id: int | None = None) -> Host:
        """Host facts for a request about vm_id (the devices of other running VMs included)."""
        stored = await self.vms.stored_vms()
        running = [device for i, r in stored.items() if i != vm_id and self._running(r) for d in r["devices"]
                   if (device := self.types.typed(d["attributes"])) is not None]
        return Host(self.hv, self.storage, self.vms.domain_type.value, running)

    async def start(self) -> None:
        """Once libvirt answers: make sure the configured storage pool exists."""
        await self.hv.connected.wait()
        host = await self.host()
        try:
            await host.ensure_pool()
        except CallError as e:
            logger.error("storage pool %s: %s", self.storage.pool, e.errmsg)

    # -- DeviceSupport ------------------------------------------------------------------------
    async def plan(self, vm: Mapping[str, Any], current: Sequence[dict[str, Any]],
                   changes: Sequence[DeviceChange], remove: Sequence[int], verrors: ValidationErrors, *,
                   force: bool = False) -> DevicePlan:
        """Validate device changes of a VM (see DeviceSupport.plan)."""
        vm_id = vm.get("id")
        elsewhere = [d["attributes"] for i, r in (await self.vms.stored_vms()).items() if i != vm_id
                     for d in r["devices"]]
        host = await self.host(vm_id)
        plan = await make_plan(self.types, vm, current, changes, remove, verrors, host, elsewhere, force)
        plan.host = await host.snapshot()
        return plan

    def changes_of_update(self, current: Sequence[Mapping[str, Any]], devices_in: Sequence[Mapping[str, Any]],
                          verrors: ValidationErrors) -> tuple[list[DeviceChange], list[int]]:
        """vm.update's device list as changes (see DeviceSupport.changes_of_update)."""
        return rows.changes_of_update(current, devices_in, verrors)

    def store(self, db: sqlite3.Connection, vm_id: int, current: Sequence[dict[str, Any]], plan: DevicePlan
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Store a plan's rows in the VM's transaction (see DeviceSupport.store)."""
        return rows.store_plan(db, vm_id, current, plan)

    def announce(self, before: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]],
                 removed: Sequence[int]) -> None:
        """The vm.device.query events of a stored change."""
        rows.announce(self.vms.middleware, self.public, before, stored, removed)

    async def provision(self, plan: DevicePlan) -> None:
        """Create the plan's volumes and files."""
        await plan.resources.provision(self.hv)

    async def unprovision(self, plan: DevicePlan) -> None:
        """Remove what provision() created."""
        await plan.resources.undo(self.hv)

    async def snapshot(self, vm_id: int | None) -> DeviceHost:
        """The host facts device XML depends on, now (nothing to look up for a VM without devices)."""
        if vm_id is not None and not (await self.vms.stored_vms())[vm_id]["devices"]:
            return HostSnapshot()
        return await (await self.host(vm_id)).snapshot()

    def elements(self, devices: Sequence[Mapping[str, Any]], host: DeviceHost) -> list[etree._Element]:
        """Domain XML of the devices."""
        return layout.elements(devices, _snapshot(host), self.types)

    def live_xml(self, devices: Sequence[Mapping[str, Any]], device_id: int, host: DeviceHost) -> list[str]:
        """XML of one device among all, for a live update."""
        return layout.device_xml(devices, _snapshot(host), device_id, self.types)

    def public(self, device: Mapping[str, Any]) -> dict[str, Any]:
        """A device with its secrets masked."""
        device_type = self.types.get(device["attributes"].get("dtype"))
        if device_type is None:
            return dict(device)
        return {**device, "attributes": device_type.public(device["attributes"])}

    async def check_available(self, vm_id: int, vm_name: str, devices: Sequence[Mapping[str, Any]]) -> DeviceHost:
        """Raise one CallError naming every device the host cannot give the VM now; else the host facts its
        start's XML is built from."""
        if not devices:
            return HostSnapshot()
        host = await self.host(vm_id)
        problems: list[str] = []
        for row in sorted(devices, key=device_order):
            device = self.types.typed(row["attributes"])
            if device is None:
                continue
            what = f"{device.dtype} device {row['id']}"
            if device.identity():
                what += f" ({device.identity()})"
            problems.extend(f"{what}: {reason}" for reason in await device.unavailable(host))
        if problems:
            raise CallError(f"VM {vm_name} cannot start, devices are not available: " + "; ".join(problems),
                            errno.ENODEV)
        return await host.snapshot()

    async def discard_files_of(self, vm: Mapping[str, Any]) -> None:
        """vm.delete: remove the files the daemon made for the VM's devices (cloud-init seeds); failures are
        logged."""
        for device in vm["devices"]:
            typed = self.types.typed(device["attributes"])
            for path in typed.owned_files() if typed is not None else ():
                try:
                    await asyncio.to_thread(os.unlink, path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    logger.warning("cannot remove %s: %s", path, e)

    def random_mac(self) -> str:
        """A random MAC address in the NIC prefix."""
        return nic.random_mac()

    async def free_display_ports(self, count: int, also_taken: Collection[int]) -> list[int]:
        """The lowest free display ports (see DeviceSupport.free_display_ports)."""
        stored = (await self.vms.stored_vms()).values()
        used = display.ports_taken(d["attributes"] for r in stored for d in r["devices"])
        used |= await (await self.host()).listening_ports() | display.RESERVED_PORTS | set(also_taken)
        return display.pick_ports(used, count)

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Delete the storage volumes the devices own (failures are logged)."""
        host = await self.host()
        for row in devices:
            device = self.types.typed(row["attributes"])
            volume = device.volume() if device is not None else None
            if volume:
                try:
                    await host.delete_volume(volume)
                except CallError as e:
                    logger.warning("cannot delete volume %s: %s", volume, e.errmsg)

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str) -> list[dict[str, Any]]:
        """Device inputs for a clone, as each type makes them (DISK volumes copied, new MACs, ports and
        serials; RAW left out)."""
        stored = (await self.vms.stored_vms())[vm["id"]]["devices"]
        host = await self.host(vm["id"])
        out: list[dict[str, Any]] = []
        try:
            for row in sorted(stored, key=device_order):
                device = self.types.typed(row["attributes"])
                attributes = await device.clone_attributes(row["attributes"], new_name, host) if device else None
                if attributes is not None:
                    out.append({"attributes": attributes, "order": row["order"]})
        except BaseException:
            await self.delete_volumes(out)
            raise
        return out


def _snapshot(host: DeviceHost) -> HostSnapshot:
    # The VM service hands back what snapshot(), plan() or check_available() gave it, or, for a VM without
    # devices, a bare DeviceHost: no facts, which a device needing one reports as a clear error.
    return host if isinstance(host, HostSnapshot) else HostSnapshot()
