"""XML pieces shared by device types: disk names, boot order, driver, block sizes, PCI and USB addresses."""
from __future__ import annotations

import string

from lxml import etree

from middlewared.plugins.vm.xml_helpers import sub

__all__ = ["blockio", "boot", "disk_driver", "disk_name", "pci_address", "pci_source_address", "sub",
           "usb_address"]


def disk_name(prefix: str, number: int) -> str:
    """The guest disk name for the number-th (from 1) disk with this prefix: sda ... sdz, sdaa (bijective
    base 26, as libvirt and the kernel count)."""
    if number < 1:
        raise ValueError("disk numbers start at 1")
    letters = ""
    while number:
        number, rest = divmod(number - 1, 26)
        letters = string.ascii_lowercase[rest] + letters
    return prefix + letters


def boot(parent: etree._Element, order: int | None) -> None:
    """`<boot order=N/>` when the device is bootable."""
    if order is not None:
        sub(parent, "boot", order=str(order))


def disk_driver(parent: etree._Element, iotype: str | None = None, fmt: str = "raw") -> etree._Element:
    """The qemu driver of an image format; with an I/O type also host-cache bypass and discard passthrough."""
    if iotype is None:
        return sub(parent, "driver", name="qemu", type=fmt)
    # cache=none (O_DIRECT) is what io=native needs, and keeps guest flushes honest for all I/O types.
    return sub(parent, "driver", name="qemu", type=fmt, cache="none", io=iotype.lower(), discard="unmap")


def blockio(parent: etree._Element, logical: int | None, physical: int | None) -> None:
    """Sector sizes the guest sees; physical alone is meaningless (validation requires logical with it)."""
    if logical is None:
        return
    el = sub(parent, "blockio", logical_block_size=str(logical))
    if physical is not None:
        el.set("physical_block_size", str(physical))


def pci_address(address: str) -> dict[str, str]:
    """libvirt's address attributes of a PCI address "0000:01:00.0"."""
    domain, bus, slot_function = address.split(":")
    slot, function = slot_function.split(".")
    return {"domain": f"0x{domain}", "bus": f"0x{bus}", "slot": f"0x{slot}", "function": f"0x{function}"}


def pci_source_address(parent: etree._Element, address: str) -> None:
    """`<source><address .../></source>` of a host PCI device."""
    sub(sub(parent, "source"), "address", **pci_address(address))


def usb_address(parent: etree._Element, bus: int | None) -> None:
    """The guest USB bus (controller index) a device is plugged into; libvirt picks the port."""
    if bus is not None:
        sub(parent, "address", type="usb", bus=str(bus))
