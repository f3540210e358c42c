"""USB: a host USB device passed to the guest, found by vendor/product ids or by libvirt node device name."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, Mapping

from lxml import etree

from middlewared.plugins.vm_device.base import DeviceType
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


def _matches(device: UsbDevice, attributes: Mapping[str, Any]) -> bool:
    if attributes.get("device"):
        return bool(device.name == attributes["device"])
    usb = attributes.get("usb") or {}
    return device.matches(usb.get("vendor_id", ""), usb.get("product_id", ""))


class Usb(DeviceType):
    """USB passthrough, on a guest USB controller of the chosen model."""

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

    async def normalize(self, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        if a["usb"] and a["device"]:
            check.error(p, "usb", "Either device must be specified or USB details but not both")
        elif not a["usb"] and not a["device"]:
            check.error(p, "device", "Either device or attributes.usb must be specified")
        elif a["device"]:
            if not any(d.name == a["device"] for d in await check.host.usb_devices()):
                check.error(p, "device", "Not a valid choice. The device is not available for USB passthrough",
                            errno.ENOENT)
        else:
            a["usb"] = {k: str(v).lower() for k, v in a["usb"].items()}
        return a

    def to_xml(self, attributes: Mapping[str, Any], slot: Slot) -> list[etree._Element]:
        hostdev = etree.Element("hostdev", mode="subsystem", type="usb", managed="yes")
        source = sub(hostdev, "source")
        if attributes["device"]:
            found = slot.host.usb.get(attributes["device"])
            if found is None:
                # Unplugged: left out of the definition; vm.start refuses such a VM (check_available).
                return []
            ids, bus_device = (found.vendor_id, found.product_id), {"bus": str(found.bus), "device": str(found.device)}
        else:
            ids, bus_device = (attributes["usb"]["vendor_id"], attributes["usb"]["product_id"]), None
        sub(source, "vendor", id=ids[0])
        sub(source, "product", id=ids[1])
        if bus_device:
            sub(source, "address", **bus_device)
        usb_address(hostdev, slot.usb_bus)
        return [hostdev]

    async def unavailable(self, attributes: Mapping[str, Any], host: "Host") -> list[str]:
        if not any(_matches(d, attributes) for d in await host.usb_devices()):
            return ["the USB device is not plugged in"]
        if any(a.get("dtype") == "USB" and _same(a, attributes) for a in host.running_elsewhere):
            return ["USB device is already being used by another active VM"]
        return []

    def identity(self, attributes: Mapping[str, Any]) -> str:
        usb = attributes.get("usb")
        return str(attributes.get("device") or (f"{usb['vendor_id']}:{usb['product_id']}" if usb else ""))


def _same(a: Mapping[str, Any], b: Mapping[str, Any]) -> bool:
    return (a.get("device"), a.get("usb")) == (b.get("device"), b.get("usb"))
