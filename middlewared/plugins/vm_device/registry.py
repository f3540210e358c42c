"""The table of device types: every dtype the daemon knows, declared in one place."""
from __future__ import annotations

from typing import Any, Hashable, Iterator, Mapping

from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.cdrom import Cdrom
from middlewared.plugins.vm_device.cloud_init import CloudInit
from middlewared.plugins.vm_device.disk import Disk
from middlewared.plugins.vm_device.display import Display
from middlewared.plugins.vm_device.nic import Nic
from middlewared.plugins.vm_device.pci import Pci
from middlewared.plugins.vm_device.raw import Raw
from middlewared.plugins.vm_device.usb import Usb


class Registry:
    """Device types by dtype; registering a dtype twice is a start-up error."""

    def __init__(self, types: tuple[type[Device], ...] = ()) -> None:
        self._types: dict[str, type[Device]] = {}
        for device_class in types:
            self.register(device_class)

    def register(self, device_class: type[Device]) -> None:
        """Add a device type."""
        if device_class.dtype in self._types:
            raise ValueError(f"device type {device_class.dtype} is registered twice")
        self._types[device_class.dtype] = device_class

    def __getitem__(self, dtype: str) -> type[Device]:
        return self._types[dtype]

    def get(self, dtype: object) -> type[Device] | None:
        """The type of a dtype, or None when unknown."""
        return self._types.get(dtype) if isinstance(dtype, str) else None

    def typed(self, attributes: Mapping[str, Any]) -> Device | None:
        """The typed device of stored attributes, or None when its dtype is unknown."""
        device_class = self.get(attributes.get("dtype"))
        return None if device_class is None else device_class.from_attributes(attributes)

    def claims(self, attributes: Mapping[str, Any]) -> frozenset[Hashable]:
        """What a device of stored attributes holds exclusively (Device.claims; nothing for an unknown dtype)."""
        device_class = self.get(attributes.get("dtype"))
        return frozenset() if device_class is None else device_class.claims(attributes)

    def __iter__(self) -> Iterator[type[Device]]:
        return iter(self._types.values())

    @property
    def names(self) -> list[str]:
        """Every dtype, in registration order."""
        return list(self._types)


# Adding a device type: its module, and one entry here (see README.md beside this file).
DEVICE_TYPES = Registry((Disk, Raw, Cdrom, Nic, Display, Pci, Usb, CloudInit))
