"""Host USB devices as libvirt node devices (usb_*), the names the USB `device` attribute uses."""
from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import libvirt

from middlewared.plugins.vm_device.model import UsbAddress


@dataclass(frozen=True)
class UsbDevice:
    """One host USB device."""

    name: str
    vendor_id: str
    product_id: str
    vendor: str
    product: str
    bus: int
    device: int

    @property
    def address(self) -> UsbAddress:
        return UsbAddress(self.vendor_id, self.product_id, self.bus, self.device)

    def matches(self, vendor_id: str, product_id: str) -> bool:
        """Whether this is a device with these ids ("0x1d6b", any case)."""
        return (self.vendor_id, self.product_id) == (vendor_id.lower(), product_id.lower())


def parse_usb_device(xml: str) -> UsbDevice | None:
    """A UsbDevice from a node device's XML (None when it is not a USB device)."""
    root = ET.fromstring(xml)
    cap = root.find("capability[@type='usb_device']")
    if cap is None:
        return None
    vendor, product = cap.find("vendor"), cap.find("product")
    return UsbDevice(
        name=root.findtext("name") or "",
        vendor_id=(vendor.get("id", "") if vendor is not None else "").lower(),
        product_id=(product.get("id", "") if product is not None else "").lower(),
        vendor=(vendor.text or "") if vendor is not None else "",
        product=(product.text or "") if product is not None else "",
        bus=int(cap.findtext("bus") or 0),
        device=int(cap.findtext("device") or 0),
    )


def usb_devices(conn: libvirt.virConnect) -> list[UsbDevice]:
    """Every USB device of the host (blocking)."""
    out = []
    for dev in conn.listAllDevices(libvirt.VIR_CONNECT_LIST_NODE_DEVICES_CAP_USB_DEV):
        try:
            parsed = parse_usb_device(dev.XMLDesc(0))
        except libvirt.libvirtError:
            # Unplugged between listing and reading.
            continue
        if parsed is not None:
            out.append(parsed)
    return sorted(out, key=lambda d: d.name)
