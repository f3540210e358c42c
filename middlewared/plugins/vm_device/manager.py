"""The device plugin's side of the VM service (DeviceSupport): plans, resources, XML, start checks, clones."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import Any, Mapping, Sequence

from lxml import etree

from middlewared.config import StorageConfig
from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange, DevicePlan
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.model import VMRecord
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm_device import layout, pool
from middlewared.plugins.vm_device.host import Host
from middlewared.plugins.vm_device.model import HostSnapshot
from middlewared.plugins.vm_device.paths import PathError, confine
from middlewared.plugins.vm_device.planning import make_plan
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry

logger = logging.getLogger(__name__)


class DeviceManager:
    """Implements DeviceSupport for the VM service; vm.device.* uses it too."""

    def __init__(self, vms: VMRecords, storage: StorageConfig, types: Registry = DEVICE_TYPES) -> None:
        self.vms = vms
        self.storage = storage
        self.types = types
        # Host facts of the last validation or start check: the XML is built from them, without I/O.
        self.snapshot = HostSnapshot()
        # The start-up task (pool set-up once libvirt answers).
        self.starting: asyncio.Task[None] | None = None

    @property
    def hv(self) -> Hypervisor:
        return self.vms.hypervisor

    def _running(self, record: Mapping[str, Any]) -> bool:
        return self.hv.status(f"{record['id']}_{record['name']}").state != "STOPPED"

    async def host(self, vm_id: int | None = None) -> Host:
        """Host facts for a request about vm_id (the devices of other running VMs included)."""
        stored = await self.vms.stored_vms()
        running = [d["attributes"] for i, r in stored.items() if i != vm_id and self._running(r)
                   for d in r["devices"]]
        return Host(self.hv, self.storage, self.vms.domain_type.value, running)

    async def start(self) -> None:
        """Once libvirt answers: make sure the configured storage pool exists and take a first snapshot."""
        await self.hv.connected.wait()
        host = await self.host()
        try:
            await host.ensure_pool()
            self.snapshot = await host.snapshot()
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
        if changes:
            self.snapshot = await host.snapshot()
        return plan

    async def provision(self, plan: DevicePlan) -> None:
        """Create the plan's volumes and files."""
        await plan.resources.provision(self.hv)

    async def unprovision(self, plan: DevicePlan) -> None:
        """Remove what provision() created."""
        await plan.resources.undo(self.hv)

    def elements(self, vm: VMRecord, devices: Sequence[dict[str, Any]]) -> list[etree._Element]:
        """Domain XML of the devices."""
        return layout.elements(devices, self.snapshot, self.types)

    def live_xml(self, vm: VMRecord, devices: Sequence[dict[str, Any]], device_id: int) -> list[str]:
        """XML of one device among all, for a live update."""
        return layout.device_xml(devices, self.snapshot, device_id, self.types)

    def public(self, device: Mapping[str, Any]) -> dict[str, Any]:
        """A device with its secrets masked."""
        device_type = self.types.get(device["attributes"].get("dtype"))
        if device_type is None:
            return dict(device)
        return {**device, "attributes": device_type.public(device["attributes"])}

    async def check_available(self, vm: Mapping[str, Any]) -> None:
        """Raise one CallError naming every device of vm the host cannot give it now."""
        stored = (await self.vms.stored_vms()).get(vm["id"])
        devices = stored["devices"] if stored else vm["devices"]
        if not devices:
            return
        host = await self.host(vm["id"])
        problems: list[str] = []
        for device in sorted(devices, key=layout.device_order):
            a = device["attributes"]
            device_type = self.types.get(a.get("dtype"))
            if device_type is None:
                continue
            what = f"{a['dtype']} device {device['id']}"
            if device_type.identity(a):
                what += f" ({device_type.identity(a)})"
            problems.extend(f"{what}: {reason}" for reason in await device_type.unavailable(a, host))
        self.snapshot = await host.snapshot()
        if problems:
            raise CallError(f"VM {vm['name']} cannot start, devices are not available: " + "; ".join(problems),
                            errno.ENODEV)

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Delete the volumes of DISK devices (failures are logged)."""
        for device in devices:
            a = device["attributes"]
            if a.get("dtype") == "DISK" and a.get("zvol_name"):
                pool_name, _, name = a["zvol_name"].partition("/")
                try:
                    await self.hv.run(pool.delete_volume, pool_name, name)
                except CallError as e:
                    logger.warning("cannot delete volume %s: %s", a["zvol_name"], e.errmsg)

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str) -> list[dict[str, Any]]:
        """Device inputs for a clone: DISK volumes copied, new MACs, ports and serials; RAW left out."""
        stored = (await self.vms.stored_vms())[vm["id"]]["devices"]
        host = await self.host(vm["id"])
        out: list[dict[str, Any]] = []
        copies: list[dict[str, Any]] = []
        try:
            for device in sorted(stored, key=layout.device_order):
                a = dict(device["attributes"])
                if a["dtype"] == "RAW":
                    logger.info("RAW disks must be copied manually: %s is left out of clone %s", a["path"], new_name)
                    continue
                if a["dtype"] == "DISK":
                    a.update(await self._copy_volume(host, a["zvol_name"], new_name))
                    copies.append({"attributes": a})
                a.update({k: None for k in _REGENERATED.get(a["dtype"], ())})
                out.append({"attributes": a, "order": device["order"]})
        except BaseException:
            await self.delete_volumes(copies)
            raise
        return out

    async def _copy_volume(self, host: Host, zvol_name: str, new_name: str) -> dict[str, Any]:
        source = await host.volume(zvol_name)
        if source is None:
            raise CallError(f"Volume {zvol_name} does not exist.", errno.ENOENT)
        name, n = f"{source.name}_{new_name}", 0
        while await host.volume(f"{source.pool}/{name}") is not None:
            n += 1
            name = f"{source.name}_{new_name}_{n}"
        copy = await self.hv.run(pool.clone_volume, source, name)
        return {"path": copy.path, "zvol_name": copy.zvol_name}

    # -- vm.device.delete ------------------------------------------------------------------------
    async def check_storage_exists(self, attributes: Mapping[str, Any], zvol: bool, raw_file: bool) -> str | None:
        """Why the storage a delete should remove is not there (None: it is)."""
        if zvol and await (await self.host()).volume(attributes["zvol_name"]) is None:
            return f"Volume {attributes['zvol_name']} does not exist"
        if raw_file and not await asyncio.to_thread(os.path.isfile, attributes["path"]):
            return f"{attributes['path']} does not exist"
        return None

    async def remove_storage(self, attributes: Mapping[str, Any], zvol: bool, raw_file: bool) -> None:
        """Delete a DISK's volume or a RAW device's file (CallError on failure)."""
        if zvol:
            pool_name, _, name = attributes["zvol_name"].partition("/")
            await self.hv.run(pool.delete_volume, pool_name, name)
        if raw_file:
            try:
                # Resolved again: the file must still be inside the roots (a symlink may have been swapped).
                path = confine(attributes["path"], (await self.host()).roots)
                await asyncio.to_thread(os.unlink, path)
            except (OSError, PathError) as e:
                raise CallError(f"Failed to destroy {attributes['path']}: {e}", errno.EIO) from e


# Attributes a clone's devices get anew (null: chosen again at creation).
_REGENERATED: dict[str, tuple[str, ...]] = {
    "DISK": ("serial",),
    "NIC": ("mac",),
    "DISPLAY": ("port", "web_port"),
}
