"""What the VM service needs from the device plugin; a default that knows no device types."""
from __future__ import annotations

import errno
from dataclasses import dataclass, field
from typing import Any, Mapping, Protocol, Sequence

from lxml import etree

from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm.model import VMRecord


@dataclass(frozen=True)
class DeviceChange:
    """One device a request creates (`data` without id) or changes (`data["id"]`).

    `data` is what the caller sent ({id?, attributes, order?}); `attribute` is where its validation errors go,
    e.g. "vm_update.devices.2" or "vm_device_create".
    """

    attribute: str
    data: Mapping[str, Any]


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

    async def provision(self, plan: DevicePlan) -> None:
        """Create the plan's host resources; on failure undo what was made and raise CallError."""
        ...

    async def unprovision(self, plan: DevicePlan) -> None:
        """Remove the resources provision() created (the write that needed them failed)."""
        ...

    def elements(self, vm: VMRecord, devices: Sequence[dict[str, Any]]) -> list[etree._Element]:
        """Domain XML of the devices, in order (pure)."""
        ...

    def live_xml(self, vm: VMRecord, devices: Sequence[dict[str, Any]], device_id: int) -> list[str]:
        """XML of one device as placed among all devices, for virDomainUpdateDeviceFlags."""
        ...

    def public(self, device: Mapping[str, Any]) -> dict[str, Any]:
        """A device as API readers see it (secrets masked)."""
        ...

    async def check_available(self, vm: Mapping[str, Any]) -> None:
        """Raise one CallError listing every device of vm that is unavailable for a start."""
        ...

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        """Remove the storage volumes of DISK devices."""
        ...

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str) -> list[dict[str, Any]]:
        """Device inputs for a clone of vm: new MACs and ports, DISK volumes copied (removed again on
        failure)."""
        ...


class NoDevices:
    """Used until a device plugin registers: every device is refused."""

    async def plan(self, vm: Mapping[str, Any], current: Sequence[dict[str, Any]],
                   changes: Sequence[DeviceChange], remove: Sequence[int], verrors: ValidationErrors, *,
                   force: bool = False) -> DevicePlan:
        for change in changes:
            verrors.add(change.attribute, "No device types are available", errno.EINVAL)
        return DevicePlan(remove=list(remove))

    async def provision(self, plan: DevicePlan) -> None:
        return None

    async def unprovision(self, plan: DevicePlan) -> None:
        return None

    def elements(self, vm: VMRecord, devices: Sequence[dict[str, Any]]) -> list[etree._Element]:
        return []

    def live_xml(self, vm: VMRecord, devices: Sequence[dict[str, Any]], device_id: int) -> list[str]:
        return []

    def public(self, device: Mapping[str, Any]) -> dict[str, Any]:
        return dict(device)

    async def check_available(self, vm: Mapping[str, Any]) -> None:
        return None

    async def delete_volumes(self, devices: Sequence[Mapping[str, Any]]) -> None:
        return None

    async def prepare_clone(self, vm: Mapping[str, Any], new_name: str) -> list[dict[str, Any]]:
        return []
