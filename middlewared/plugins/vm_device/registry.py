"""The table of device types: every dtype the daemon knows, declared in one place."""
from __future__ import annotations

from typing import Iterator

from middlewared.plugins.vm_device.base import DeviceType
from middlewared.plugins.vm_device.cdrom import Cdrom
from middlewared.plugins.vm_device.disk import Disk
from middlewared.plugins.vm_device.display import Display
from middlewared.plugins.vm_device.nic import Nic
from middlewared.plugins.vm_device.pci import Pci
from middlewared.plugins.vm_device.raw import Raw
from middlewared.plugins.vm_device.usb import Usb


class Registry:
    """Device types by dtype; registering a dtype twice is a start-up error."""

    def __init__(self, types: tuple[DeviceType, ...] = ()) -> None:
        self._types: dict[str, DeviceType] = {}
        for device_type in types:
            self.register(device_type)

    def register(self, device_type: DeviceType) -> None:
        """Add a device type."""
        if device_type.dtype in self._types:
            raise ValueError(f"device type {device_type.dtype} is registered twice")
        self._types[device_type.dtype] = device_type

    def __getitem__(self, dtype: str) -> DeviceType:
        return self._types[dtype]

    def get(self, dtype: object) -> DeviceType | None:
        """The type of a dtype, or None when unknown."""
        return self._types.get(dtype) if isinstance(dtype, str) else None

    def __iter__(self) -> Iterator[DeviceType]:
        return iter(self._types.values())

    @property
    def names(self) -> list[str]:
        """Every dtype, in registration order."""
        return list(self._types)


DEVICE_TYPES = Registry((Disk(), Raw(), Cdrom(), Nic(), Display(), Pci(), Usb()))
