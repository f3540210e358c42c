"""What the VM service needs from the device plugin; a default that knows no device types."""
from __future__ import annotations

import errno
from typing import Any, Protocol, Sequence

from lxml import etree

from middlewared.errors import ValidationErrors
from middlewared.plugins.vm.model import VMRecord


class DeviceSupport(Protocol):
    """Device types as the VM service uses them: validation, XML, start checks, resources."""

    async def normalize(self, vm: dict[str, Any], devices: Sequence[dict[str, Any]], attribute: str,
                        verrors: ValidationErrors) -> list[dict[str, Any]]:
        """Validate devices of a VM; return rows with defaults filled (MACs, ports chosen)."""
        ...

    def elements(self, vm: VMRecord, devices: Sequence[dict[str, Any]]) -> list[etree._Element]:
        """Domain XML of the devices, in order (pure)."""
        ...

    async def check_available(self, vm: dict[str, Any]) -> None:
        """Raise one CallError listing every device of vm that is unavailable for a start."""
        ...

    async def delete_volumes(self, devices: Sequence[dict[str, Any]]) -> None:
        """Remove the storage volumes of DISK devices."""
        ...

    async def prepare_clone(self, vm: dict[str, Any], new_name: str) -> list[dict[str, Any]]:
        """Device inputs for a clone of vm: new MACs and ports, DISK volumes copied (removed again on
        failure)."""
        ...


class NoDevices:
    """Used until a device plugin registers: every device is refused."""

    async def normalize(self, vm: dict[str, Any], devices: Sequence[dict[str, Any]], attribute: str,
                        verrors: ValidationErrors) -> list[dict[str, Any]]:
        for index, _ in enumerate(devices):
            verrors.add(f"{attribute}.{index}", "No device types are available", errno.EINVAL)
        return []

    def elements(self, vm: VMRecord, devices: Sequence[dict[str, Any]]) -> list[etree._Element]:
        return []

    async def check_available(self, vm: dict[str, Any]) -> None:
        return None

    async def delete_volumes(self, devices: Sequence[dict[str, Any]]) -> None:
        return None

    async def prepare_clone(self, vm: dict[str, Any], new_name: str) -> list[dict[str, Any]]:
        return []
