"""Typed values shared by the device types: host facts the XML depends on, a device's place, a proposal."""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any, Mapping

from middlewared.plugins.vm.devices_api import DeviceHost

class NicKind(enum.StrEnum):
    """What a NIC's `nic_attach` names on the host; the value is libvirt's `<interface type>`."""

    BRIDGE = "bridge"
    DIRECT = "direct"
    NETWORK = "network"


@dataclass(frozen=True)
class UsbAddress:
    """A host USB device as libvirt sees it (node device usb_*)."""

    vendor_id: str
    product_id: str
    bus: int
    device: int


@dataclass(frozen=True)
class HostSnapshot(DeviceHost):
    """Host facts the device XML depends on, looked up before the XML is built (never inside it)."""

    nic_kinds: Mapping[str, NicKind] = field(default_factory=dict)
    # The IPv4 default-route interface: where a NIC without nic_attach goes (as upstream).
    default_interface: str | None = None
    usb: Mapping[str, UsbAddress] = field(default_factory=dict)

    def nic_kind(self, name: str) -> NicKind:
        """The kind of a host interface or network; unknown names follow upstream's rule (br* = bridge)."""
        kind = self.nic_kinds.get(name)
        if kind is not None:
            return kind
        return NicKind.BRIDGE if name.startswith(("br", "virbr")) else NicKind.DIRECT


@dataclass(frozen=True)
class Slot:
    """Where one device sits among the VM's devices: what its XML needs beyond its own attributes."""

    host: HostSnapshot
    # `<boot order>` of bootable devices, counted over DISK, RAW and CDROM in device order.
    boot_order: int | None = None
    # Guest disk name (sda, vdb...).
    target: str | None = None
    # Index of the USB controller a USB device is plugged into.
    usb_bus: int | None = None
    # Whether no device of the same dtype comes before it (the first DISPLAY brings the video card and tablet).
    first_of_type: bool = False


@dataclass
class Proposal:
    """One device of a request after merging (update) and defaults, before its type's checks."""

    attribute: str
    id: int | None
    order: int
    attributes: dict[str, Any]
    # The stored device, when the proposal changes one.
    old: Mapping[str, Any] | None = None
    old_order: int | None = None

    @property
    def dtype(self) -> str:
        return str(self.attributes["dtype"])


def as_snapshot(host: DeviceHost) -> HostSnapshot:
    """The host facts the VM service hands back (from snapshot(), a plan or check_available()); for a VM without
    devices it holds a bare DeviceHost: no facts, which a device needing one reports as a clear error."""
    return host if isinstance(host, HostSnapshot) else HostSnapshot()
