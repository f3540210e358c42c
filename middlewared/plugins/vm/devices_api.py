"""What the VM service needs from the device plugin: one small typed interface, implemented by vm_device."""
from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Collection, Mapping, Protocol, Sequence

from lxml import etree

from middlewared.errors import CallError, ValidationErrors


@dataclass(frozen=True)
class DeviceChange:
    """One device a request creates (`data` without id) or changes (`data["id"]`).

    `data` is what the caller sent ({id?, attributes, order?}); `attribute` is where its validation errors go,
    e.g. "vm_update.devices.2" or "vm_device_create".
    """

    attribute: str
    data: Mapping[str, Any]


class DeviceHost:
    """An immutable snapshot of the host facts device XML depends on (interfaces, USB addresses), taken in the
    request that builds the XML and passed to it explicitly; the VM service hands it on without reading it."""


@dataclass
class DevicePlan:
    """Validated device changes of one VM, ready to be stored in one transaction."""

    # Rows to store, one per change and in the same order: with "id" to update, without to insert.
    rows: list[dict[str, Any]] = field(default_factory=list)
    # Ids of devices to delete.
    remove: list[int] = field(default_factory=list)
    # Ids of changed devices whose change is also applied to the running domain.
    live: list[int] = field(default_factory=list)
    # Why the change cannot be made while the VM runs (empty: it can).
    busy: list[str] = field(default_factory=list)
    # Host resources (volumes, files) to create before storing; opaque to the VM service.
    resources: Any = None
    # The host as validation saw it: the XML of the stored result is built from it.
    host: DeviceHost = field(default_factory=DeviceHost)

    def check_busy(self, vm_name: str) -> None:
        """Raise one CallError (EBUSY) when the VM runs and the change cannot be made live."""
        if self.busy:
            raise CallError(f"VM {vm_name} is running: " + "; ".join(self.busy), errno.EBUSY)


class DeviceSupport(Protocol):
    """Device types as the VM service uses them: validation, resources, XML, start checks, clones."""

    async def plan(self, vm: Mapping[str, Any], current: Sequence[dict[str, Any]],
                   changes: Sequence[DeviceChange], remove: Sequence[int], verrors: ValidationErrors, *,
                   force: bool = False) -> DevicePlan:
        """Validate changes to the stored devices `current` of vm (errors into verrors); fill defaults,
        choose MACs and ports. No host changes yet: `provision` makes them."""
        ...

    def changes_of_update(self, current: Sequence[Mapping[str, Any]], devices_in: Sequence[Mapping[str, Any]],
                          verrors: ValidationErrors) -> tuple[list[DeviceChange], list[int]]:
        """vm.update's device list as changes (with an id: that device; without: a new one) and the ids of the
        stored devices it leaves out (removed); errors into verrors."""
        ...

    def store(self, db: sqlite3.Connection, vm_id: int, current: Sequence[dict[str, Any]], plan: DevicePlan
              ) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """Store a plan's rows and deletions inside the VM's transaction (blocking); return every device of the VM
        in order and the stored rows of the plan."""
        ...

    def announce(self, before: Sequence[Mapping[str, Any]], stored: Sequence[Mapping[str, Any]],
                 removed: Sequence[int]) -> None:
        """Send the vm.device.query events of a stored change."""
        ...

    async def provision(self, plan: DevicePlan) -> None:
        """Create the plan's host resources; on failure undo what was made and raise CallError."""
        ...

    async def unprovision(self, plan: DevicePlan) -> None:
        """Remove the resources provision() created (the write that needed them failed)."""
        ...

    async def snapshot(self, vm_id: int | None) -> DeviceHost:
        """The host facts the XML of vm_id's devices depends on, as they are now."""
        ...

    def elements(self, devices: Sequence[Mapping[str, Any]], host: DeviceHost) -> list[etree._Element]:
        """Domain XML of stored devices, in order (pure; CallError when the host lacks what one needs)."""
        ...

    def live_xml(self, devices: Sequence[Mapping[str, Any]], device_id: int, host: DeviceHost) -> list[str]:
        """XML of one device as placed among all devices, for virDomainUpdateDeviceFlags."""
        ...

    def public(self, device: Mapping[str, Any]) -> dict[str, Any]:
        """A device as API readers see it (secrets masked)."""
        ...

    async def check_available(self, vm_id: int, vm_name: str, devices: Sequence[Mapping[str, Any]]) -> DeviceHost:
        """Raise one CallError listing every device that is unavailable for a start; else the host facts the
        start's XML is built from."""
        ...

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Remove the storage volumes the devices own (DISK)."""
        ...

    def random_mac(self) -> str:
        """A random MAC address in the prefix NICs get theirs from."""
        ...

    async def free_display_ports(self, count: int, also_taken: Collection[int]) -> list[int]:
        """The lowest `count` ports a new DISPLAY could take: held by no display and no listening socket."""
        ...

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str) -> list[dict[str, Any]]:
        """Device inputs for a clone of vm: new MACs and ports, DISK volumes copied (removed again on
        failure)."""
        ...

