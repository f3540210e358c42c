"""USB: a host USB device passed to the guest, found by vendor/product ids or by libvirt node device name."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Callable

from lxml import etree

from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.usbdev import UsbDevice
from middlewared.plugins.vm_device.xml import sub, usb_address

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check

# QEMU's USB host controllers, as libvirt's `<controller type='usb' model>` names them.
CONTROLLER_TYPES = ("piix3-uhci", "piix4-uhci", "ehci", "ich9-ehci1", "vt82c686b-uhci", "pci-ohci", "nec-xhci",
                    "qemu-xhci")
DEFAULT_CONTROLLER = "nec-xhci"
_USB_ID = {"type": "string", "pattern": r"^0x[0-9a-fA-F]{4}$"}


@dataclass(frozen=True)
class UsbIds:
    """A USB device by its vendor and product ids ("0x1d6b", lower case once stored)."""

    vendor_id: str
    product_id: str


@dataclass(frozen=True, kw_only=True)
class Usb(Device):
    """USB passthrough, on a guest USB controller of the chosen model."""

    usb: UsbIds | None
    controller_type: str
    device: str | None

    dtype = "USB"
    description = "A host USB device passed through to the guest."
    properties = {
        "usb": {"type": ["object", "null"], "default": None, "additionalProperties": False,
                "required": ["vendor_id", "product_id"],
                "description": "The device by its ids (it may be plugged in later); or use `device`.",
                "properties": {"vendor_id": {**_USB_ID, "description": "Vendor id, e.g. 0x1d6b."},
                               "product_id": {**_USB_ID, "description": "Product id, e.g. 0x0002."}}},
        "controller_type": {"type": "string", "enum": list(CONTROLLER_TYPES), "default": DEFAULT_CONTROLLER,
                            "description": "Model of the guest USB controller the device is plugged into."},
        "device": {"type": ["string", "null"], "default": None, "minLength": 1,
                   "description": "libvirt node device name of a plugged-in device, e.g. usb_1_3 (see "
                                  "vm.device.usb_passthrough_choices); or use `usb`."},
    }

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        if a["usb"] and a["device"]:
            check.error(p, "usb", "Either device must be specified or USB details but not both")
        elif not a["usb"] and not a["device"]:
            check.error(p, "device", "Either device or attributes.usb must be specified")
        elif a["device"]:
            if not await _plugged_in(check.host, lambda d: d.name == a["device"]):
                check.error(p, "device", "Not a valid choice. The device is not available for USB passthrough",
                            errno.ENOENT)
        else:
            a["usb"] = {k: str(v).lower() for k, v in a["usb"].items()}
        return a

    def usb_controller(self) -> str | None:
        return self.controller_type

    def uses(self, device: UsbDevice) -> bool:
        """Whether this is the host device the attributes name (by node device name, else by ids)."""
        if self.device:
            return device.name == self.device
        return self.usb is not None and device.matches(self.usb.vendor_id, self.usb.product_id)

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        hostdev = etree.Element("hostdev", mode="subsystem", type="usb", managed="yes")
        source = sub(hostdev, "source")
        if self.device:
            found = slot.host.usb.get(self.device)
            if found is None:
                # Unplugged: left out of the definition; vm.start refuses such a VM (check_available).
                return []
            ids, bus_device = (found.vendor_id, found.product_id), {"bus": str(found.bus), "device": str(found.device)}
        else:
            assert self.usb is not None  # validation requires usb or device
            ids, bus_device = (self.usb.vendor_id, self.usb.product_id), None
        sub(source, "vendor", id=ids[0])
        sub(source, "product", id=ids[1])
        if bus_device:
            sub(source, "address", **bus_device)
        usb_address(hostdev, slot.usb_bus)
        return [hostdev]

    async def unavailable(self, host: "Host") -> list[str]:
        # Read now, not kept: the start's XML gives the device's current bus and device numbers.
        if not any(self.uses(d) for d in await host.usb_devices(fresh=True)):
            return ["the USB device is not plugged in"]
        if any(isinstance(other, Usb) and (other.device, other.usb) == (self.device, self.usb)
               for other in host.running_elsewhere):
            return ["USB device is already being used by another active VM"]
        return []

    def identity(self) -> str:
        return self.device or (f"{self.usb.vendor_id}:{self.usb.product_id}" if self.usb else "")


async def _plugged_in(host: "Host", match: Callable[[UsbDevice], bool]) -> bool:
    """Whether a host USB device matches, read again before saying no from the kept list (an event reporting the
    device may still be on its way)."""
    return (any(match(d) for d in await host.usb_devices())
            or any(match(d) for d in await host.usb_devices(fresh=True)))
