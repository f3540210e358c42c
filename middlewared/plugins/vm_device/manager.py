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
from middlewared.plugins.vm.model import VMRecord, device_order, domain_name
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm_device import layout
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
        # Host facts of the last validation or start check: the XML is built from them, without I/O.
        self.snapshot = HostSnapshot()
        # The start-up task (pool set-up once libvirt answers).
        self.starting: asyncio.Task[None] | None = None

    @property
    def hv(self) -> Hypervisor:
        return self.vms.hypervisor

    def _running(self, record: Mapping[str, Any]) -> bool:
        return self.hv.status(domain_name(record["id"], record["name"])).state != "STOPPED"

    async def host(self, vm_id: int | None = None) -> Host:
        """Host facts for a request about vm_id (the devices of other running VMs included)."""
        stored = await self.vms.stored_vms()
        running = [device for i, r in stored.items() if i != vm_id and self._running(r) for d in r["devices"]
                   if (device := self.types.typed(d["attributes"])) is not None]
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
        for row in sorted(devices, key=device_order):
            device = self.types.typed(row["attributes"])
            if device is None:
                continue
            what = f"{device.dtype} device {row['id']}"
            if device.identity():
                what += f" ({device.identity()})"
            problems.extend(f"{what}: {reason}" for reason in await device.unavailable(host))
        self.snapshot = await host.snapshot()
        if problems:
            raise CallError(f"VM {vm['name']} cannot start, devices are not available: " + "; ".join(problems),
                            errno.ENODEV)

    async def discard_files(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Remove the files the daemon made for devices (cloud-init seeds); failures are logged."""
        for device in devices:
            typed = self.types.typed(device["attributes"])
            for path in typed.owned_files() if typed is not None else ():
                try:
                    await asyncio.to_thread(os.unlink, path)
                except FileNotFoundError:
                    pass
                except OSError as e:
                    logger.warning("cannot remove %s: %s", path, e)

    async def discard_files_of(self, vm: Mapping[str, Any]) -> None:
        """vm.delete: the files of every device of the VM."""
        await self.discard_files(vm["devices"])

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
