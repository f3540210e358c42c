"""The boundary between the VM service and the device plugin, both ways.

The VM service asks the device plugin for what it cannot know itself (DeviceSupport); the device plugin owns every
write of device rows, and asks the VM service for one thing only: to run its store step inside the VM's
transaction and redefine the domain from the result (VMRecords.redefine; vm.create and vm.update hand their own
transaction to DeviceSupport.write as its commit step).

DeviceChange and DevicePlan are the device plugin's working values; the VM service never sees them.
"""
from __future__ import annotations

import errno
import sqlite3
from dataclasses import dataclass, field
from typing import (Any, AsyncContextManager, Awaitable, Callable, Collection, Hashable, Iterable, Mapping, Protocol,
                    Sequence, TypeVar)

import libvirt
from lxml import etree

from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm.model import VMRecord

T = TypeVar("T")


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
    # Host resources (volumes, files) to create before storing.
    resources: Any = None
    # The host as validation saw it: the XML of the stored result is built from it.
    host: DeviceHost = field(default_factory=DeviceHost)

    def check_busy(self, vm_name: str) -> None:
        """Raise one CallError (EBUSY) when the VM runs and the change cannot be made live."""
        if self.busy:
            raise CallError(f"VM {vm_name} is running: " + "; ".join(self.busy), errno.EBUSY)


@dataclass(frozen=True)
class DeviceRequest:
    """The devices of a vm.create (`new`) or vm.update, as the caller sent them.

    `vm` is the VM as it will be (for an update with its id and status), `current` its stored devices (empty for a
    new VM), `devices` the caller's full device list (None: vm.update leaves the devices alone). Errors go into
    `verrors`, which also holds the VM's own errors: the device plugin raises them all at once.
    """

    vm: Mapping[str, Any]
    current: Sequence[dict[str, Any]]
    devices: Sequence[Mapping[str, Any]] | None
    verrors: ValidationErrors
    new: bool = False


@dataclass(frozen=True)
class StoredDevices:
    """What the device plugin's store step leaves in the VM's transaction: every device of the VM in order, and
    the host facts their XML is built from."""

    devices: Sequence[Mapping[str, Any]]
    host: DeviceHost


# The device plugin's store step, run inside the VM's transaction once the VM's row exists: writes the device rows
# (and applies live changes to the running domain through the connection) and says what the domain is made of.
StoreDevices = Callable[[sqlite3.Connection, libvirt.virConnect, VMRecord], StoredDevices]

# The VM side of a device write: run one transaction that calls the store step where device rows belong and then
# defines the domain from what it returns; libvirt errors roll the transaction back.
Commit = Callable[[StoreDevices], Awaitable[T]]


class DeviceSupport(Protocol):
    """What the VM service needs from the device plugin, and nothing more: the plugin is always loaded, and device
    rows, their validation and their events are its own."""

    def public(self, device: Mapping[str, Any]) -> dict[str, Any]:
        """A device as API readers see it (secrets masked): vm.query entries embed the VM's devices."""
        ...

    def claims(self, attributes: Mapping[str, Any]) -> Iterable[Hashable]:
        """What a stored device holds that no other device may hold at the same time (its MAC, display ports,
        volume): the VM service indexes its stored devices by these (pure)."""
        ...

    def elements(self, devices: Sequence[Mapping[str, Any]], host: DeviceHost) -> list[etree._Element]:
        """Domain XML of stored devices, in order (pure; CallError when the host lacks what one needs): the VM
        service builds the whole domain XML and places these in it."""
        ...

    async def snapshot(self, vm_id: int | None) -> DeviceHost:
        """The host facts the XML of vm_id's devices depends on, as they are now: for a domain redefined without a
        device change (vm.update of VM fields only, start-up reconciliation)."""
        ...

    async def check_available(self, vm_id: int, vm_name: str, devices: Sequence[Mapping[str, Any]]) -> DeviceHost:
        """vm.start: raise one CallError listing every device that is unavailable now; else the host facts the
        start's XML is built from."""
        ...

    async def write(self, read: Callable[[], Awaitable[DeviceRequest]], commit: Commit[T]) -> T:
        """vm.create/vm.update: validate the devices of the request `read` makes (raising request.verrors with the
        VM's own errors), refuse what a running VM cannot take, create host resources, then `commit` (removing
        the resources again if it fails) and announce the device events; returns what `commit` returned.

        `read` runs under the lock every device write takes (MACs and display ports are unique across VMs), so
        that the VM and its devices it reads are still current when the commit writes them."""
        ...

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str, linked: bool) -> list[dict[str, Any]]:
        """vm.clone: device inputs for the clone (new MACs and ports, DISK volumes copied or, linked, overlaid;
        removed again on failure); the clone is then made by vm.create."""
        ...

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Remove the storage volumes the devices own (DISK): vm.delete with zvols, a clone or an OVA import that
        failed after its volumes were made."""
        ...

    def removing_volumes(self, devices: Sequence[Mapping[str, Any]]) -> AsyncContextManager[None]:
        """vm.delete with zvols, around the transaction that deletes the rows: the volumes are recorded as about
        to lose their owner (delete_volumes forgets them once removed), so that a daemon killed before
        delete_volumes removes them at its next start; if the body fails, the rows still own them."""
        ...

    def random_mac(self) -> str:
        """vm.random_mac: a random MAC address in the prefix NICs get theirs from."""
        ...

    async def free_display_ports(self, count: int, also_taken: Collection[int]) -> list[int]:
        """vm.port_wizard: the lowest `count` ports a new DISPLAY could take, held by no display and no listening
        socket."""
        ...
