"""The device plugin's side of the VM service (DeviceSupport): device writes, XML, start checks, clones."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
from typing import (Any, AsyncContextManager, Awaitable, Callable, Collection, Hashable, Mapping, Sequence,
                    TypeVar)

from lxml import etree

from middlewared.config import StorageConfig
from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm.devices_api import Commit, DeviceChange, DeviceHost, DevicePlan, DeviceRequest
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.model import VMState, device_order, domain_name
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm_device import display, layout, nic, rows
from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.foreign_ports import ForeignPorts
from middlewared.plugins.vm_device.host import Host
from middlewared.plugins.vm_device.intents import VOLUME, Intents, Leftover, targets_of
from middlewared.plugins.vm_device.model import HostSnapshot, as_snapshot
from middlewared.plugins.vm_device.planning import make_plan
from middlewared.plugins.vm_device.registry import DEVICE_TYPES, Registry
from middlewared.plugins.vm_device.writes import DeviceWrites

logger = logging.getLogger(__name__)

T = TypeVar("T")


class DeviceManager:
    """Implements DeviceSupport for the VM service; vm.device.* uses it too."""

    def __init__(self, vms: VMRecords, storage: StorageConfig, types: Registry = DEVICE_TYPES) -> None:
        self.vms = vms
        self.storage = storage
        self.types = types
        # The start-up task (pool set-up once libvirt answers).
        self.starting: asyncio.Task[None] | None = None
        # Every write of device rows (vm.device.* and the devices of vm.create/update).
        self.writes = DeviceWrites(self)
        self.foreign = ForeignPorts()
        self._intents: Intents | None = None

    @property
    def intents(self) -> Intents:
        """The intent records of volumes and files being made (the database opens after this is made)."""
        if self._intents is None:
            self._intents = Intents(self.vms.middleware.db)
        return self._intents

    @property
    def hv(self) -> Hypervisor:
        return self.vms.hypervisor

    def _running(self, record: Mapping[str, Any]) -> bool:
        return self.hv.status(domain_name(record["id"], record["name"])).state != VMState.STOPPED

    async def host(self, vm_id: int | None = None) -> Host:
        """Host facts for a request about vm_id (the devices of other running VMs included)."""
        stored = await self.vms.stored_vms()

        def running() -> list[Device]:
            # Only PCI and USB checks ask: other requests do not pay for a look at every VM.
            return [device for i, r in stored.items() if i != vm_id and self._running(r) for d in r["devices"]
                    if (device := self.types.typed(d["attributes"])) is not None]
        return Host(self.hv, self.storage, self.vms.domain_type.value, running, self.intents,
                    lambda: self.foreign.ports(self.hv, self.vms.instance))

    async def start(self) -> None:
        """Once libvirt answers: make sure the configured storage pool exists, then remove the volumes and files
        of writes an earlier life of the daemon never finished."""
        self.hv.definition_listeners.append(self.foreign.changed)
        await self.hv.connected.wait()
        host = await self.host()
        try:
            await host.ensure_pool()
        except CallError as e:
            logger.error("storage pool %s: %s", self.storage.pool, e.errmsg)
        try:
            await self._remove_leftovers(host)
        except CallError as e:
            logger.error("cannot remove what unfinished writes left (at the next start then): %s", e.errmsg)
        try:
            # Read once now rather than at the first display's creation (the first read is of every domain).
            await self.foreign.ports(self.hv, self.vms.instance)
        except CallError as e:
            logger.warning("cannot read the display ports of other domains: %s", e.errmsg)

    async def _remove_leftovers(self, host: Host) -> None:
        """Remove the volumes and files of writes an earlier life never finished (see intents.py)."""
        async with self.writes.lock:
            stored = (await self.vms.stored_vms()).values()
            owned = targets_of(d["attributes"] for r in stored for d in r["devices"])
            removed = await self.intents.clean_up(self.hv, owned, self.vms.instance, host.roots)
        if removed:
            logger.warning("removed %d volumes and files of writes the daemon never finished: %s",
                           len(removed), ", ".join(removed))

    async def plan(self, vm: Mapping[str, Any], current: Sequence[dict[str, Any]],
                   changes: Sequence[DeviceChange], remove: Sequence[int], verrors: ValidationErrors, *,
                   force: bool = False) -> DevicePlan:
        """Validate changes to the stored devices `current` of vm (errors into verrors); fill defaults, choose MACs
        and ports. No host changes yet: the plan's resources make them."""
        vm_id = vm.get("id")
        claims = await self.vms.device_claims()

        def held_elsewhere(claim: Hashable) -> bool:
            return any(holder != vm_id for holder in claims.get(claim, {}).values())
        host = await self.host(vm_id)
        plan = await make_plan(self.types, vm, current, changes, remove, verrors, host, held_elsewhere, force)
        plan.host = await host.snapshot()
        return plan

    # -- DeviceSupport ------------------------------------------------------------------------
    async def write(self, read: Callable[[], Awaitable[DeviceRequest]], commit: Commit[T]) -> T:
        """The devices of vm.create/vm.update (see DeviceSupport.write)."""
        return await self.writes.write(read, commit)

    async def snapshot(self, vm_id: int | None) -> DeviceHost:
        """The host facts device XML depends on, now (nothing to look up for a VM without devices)."""
        if vm_id is not None and not (await self.vms.stored_vms())[vm_id]["devices"]:
            return HostSnapshot()
        return await (await self.host(vm_id)).snapshot()

    def claims(self, attributes: Mapping[str, Any]) -> frozenset[Hashable]:
        """What a stored device holds exclusively (see DeviceSupport.claims)."""
        return self.types.claims(attributes)

    def elements(self, devices: Sequence[Mapping[str, Any]], host: DeviceHost) -> list[etree._Element]:
        """Domain XML of the devices."""
        return layout.elements(devices, as_snapshot(host), self.types)

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
        claims = await self.vms.device_claims()
        host = await self.host()
        taken = await host.listening_ports() | set(await host.foreign_display_ports())
        busy = display.Busy(claims.__contains__, taken | display.RESERVED_PORTS | set(also_taken))
        return display.pick_ports(busy, count)

    def _volumes(self, devices: Sequence[Mapping[str, Any]]) -> list[str]:
        """The storage volumes ("<pool>/<name>") the devices own."""
        return [v for row in devices if (d := self.types.typed(row["attributes"])) is not None and (v := d.volume())]

    def removing_volumes(self, devices: Sequence[Mapping[str, Any]]) -> AsyncContextManager[None]:
        """vm.delete with zvols: the volumes' intents around the transaction that deletes the rows (see
        DeviceSupport.removing_volumes)."""
        return self.intents.making(*(Leftover(VOLUME, v) for v in self._volumes(devices)))

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Delete the storage volumes the devices own (failures are logged)."""
        host = await self.host()
        for volume in self._volumes(devices):
            try:
                await host.delete_volume(volume)
            except CallError as e:
                logger.warning("cannot delete volume %s: %s", volume, e.errmsg)
                continue
            # Its intent (a copy or import no row came to own, a deleted VM's volume) goes with it.
            await self.intents.forget([volume])

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str, linked: bool) -> list[dict[str, Any]]:
        """Device inputs for a clone, as each type makes them (DISK volumes copied or, linked, overlaid; new MACs,
        ports and serials; RAW left out of a full clone, refused by a linked one)."""
        stored = (await self.vms.stored_vms())[vm["id"]]["devices"]
        host = await self.host(vm["id"])
        out: list[dict[str, Any]] = []
        try:
            for row in sorted(stored, key=device_order):
                device = self.types.typed(row["attributes"])
                attributes = (await device.clone_attributes(row["attributes"], new_name, host, linked)
                              if device else None)
                if attributes is not None:
                    out.append({"attributes": attributes, "order": row["order"]})
        except BaseException:
            await self.delete_volumes(out)
            raise
        return out

