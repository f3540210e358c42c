"""What DISK, RAW and CDROM share: bus and I/O attributes, serials, sector sizes, the `<disk>` element."""
from __future__ import annotations

import enum
import errno
import secrets
import string
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from lxml import etree

from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.paths import PathError, confine
from middlewared.plugins.vm_device.usb import DEFAULT_CONTROLLER
from middlewared.plugins.vm_device.xml import blockio, boot, disk_driver, sub

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.planning import Check


class Bus(enum.StrEnum):
    """The bus a guest sees a disk on."""

    AHCI = "AHCI"
    VIRTIO = "VIRTIO"
    USB = "USB"


class IoType(enum.StrEnum):
    """QEMU's I/O backend for a disk; the lower-cased value is libvirt's `io`."""

    NATIVE = "NATIVE"
    THREADS = "THREADS"
    IO_URING = "IO_URING"


# API bus -> (libvirt target bus, guest disk name prefix). USB disks are USB mass storage devices; they share
# the "sd" names with SATA.
BUSES: dict[Bus, tuple[str, str]] = {Bus.AHCI: ("sata", "sd"), Bus.VIRTIO: ("virtio", "vd"), Bus.USB: ("usb", "sd")}
SERIAL_LENGTH = 8
_SERIAL_CHARS = string.ascii_letters + string.digits


def _sector(what: str) -> dict[str, Any]:
    return {"type": ["integer", "null"], "enum": [None, 512, 4096], "default": None,
            "description": f"{what} sector size in bytes the guest sees (null: QEMU's default)."}


STORAGE_PROPERTIES: dict[str, Any] = {
    "type": {"type": "string", "enum": [b.value for b in Bus], "default": "AHCI",
             "description": "Bus the guest sees the disk on: AHCI (SATA), VIRTIO or USB (mass storage)."},
    "logical_sectorsize": _sector("Logical"),
    "physical_sectorsize": _sector("Physical (needs logical_sectorsize)"),
    "iotype": {"type": "string", "enum": [t.value for t in IoType], "default": "THREADS",
               "description": "QEMU I/O backend: NATIVE (Linux AIO), THREADS or IO_URING."},
    # virtio-blk serials are at most 20 bytes; libvirt allows these characters.
    "serial": {"type": ["string", "null"], "default": None, "maxLength": 20, "pattern": r"^[A-Za-z0-9_.+ -]*$",
               "description": "Disk serial number the guest sees; generated (8 letters and digits) when empty "
                              "and then kept."},
}
# No "{" or "}" (TrueNAS clients would take them for templates), and not empty.
PATH: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"^[^{}]*$"}


def new_serial() -> str:
    """A random serial number."""
    return "".join(secrets.choice(_SERIAL_CHARS) for _ in range(SERIAL_LENGTH))


def check_unique_path(check: "Check", p: Proposal, path: str | None) -> None:
    """A file or volume appears once among a VM's DISK, RAW and CDROM devices (upstream's rule)."""
    if path and any(a.get("path") == path for dtype in ("DISK", "RAW", "CDROM") for a in check.siblings(dtype)):
        check.error(p, "path", f'{check.vm_name} has "{path}" already configured', errno.EEXIST)


def confined_path(check: "Check", p: Proposal) -> str | None:
    """The real path of a CDROM or RAW proposal inside the storage roots, or None (the error recorded)."""
    try:
        return confine(p.attributes["path"], check.host.roots)
    except PathError as e:
        check.error(p, "path", str(e))
        return None


def disk_xml(disk_type: str, device: str, source: dict[str, str] | None, slot: Slot, bus: str, *,
             iotype: str | None = None, serial: str | None = None, logical: int | None = None,
             physical: int | None = None, readonly: bool = False, fmt: str = "raw") -> etree._Element:
    """A libvirt `<disk>` element (DISK, RAW and CDROM all use it); no source: an empty CD-ROM drive."""
    disk = etree.Element("disk", type=disk_type, device=device)
    disk_driver(disk, iotype, fmt)
    if source is not None:
        sub(disk, "source", **source)
    assert slot.target is not None
    sub(disk, "target", dev=slot.target, bus=bus)
    if readonly:
        sub(disk, "readonly")
    if serial:
        sub(disk, "serial", serial)
    boot(disk, slot.boot_order)
    blockio(disk, logical, physical)
    return disk


@dataclass(frozen=True, kw_only=True)
class StorageDevice(Device):
    """The common part of DISK and RAW: the bus and I/O attributes."""

    type: Bus
    logical_sectorsize: int | None
    physical_sectorsize: int | None
    iotype: IoType
    serial: str | None

    bootable: ClassVar[bool] = True
    default_order: ClassVar[int] = 1001
    regenerated: ClassVar[tuple[str, ...]] = ("serial",)

    def target_prefix(self) -> str | None:
        return BUSES[self.type][1]

    def usb_controller(self) -> str | None:
        return DEFAULT_CONTROLLER if self.type is Bus.USB else None

    @classmethod
    def check_storage(cls, p: Proposal, check: "Check", attributes: dict[str, Any]) -> None:
        """Sector sizes, serial (generated when empty), path uniqueness; attributes gets the serial."""
        a = p.attributes
        if a["physical_sectorsize"] is not None and a["logical_sectorsize"] is None:
            check.error(p, "logical_sectorsize", "This field must be provided when physical_sectorsize is specified.")
        if not a["serial"]:
            attributes["serial"] = new_serial()
        check_unique_path(check, p, attributes.get("path"))

    def storage_xml(self, disk_type: str, source: dict[str, str], slot: Slot, fmt: str = "raw",
                    readonly: bool = False) -> etree._Element:
        """The `<disk>` of a DISK or RAW device."""
        # QEMU's SATA hard disk (ide-hd) refuses read-only images; its SATA CD-ROM (ide-cd) is the read-only
        # SATA device guests know.
        device = "cdrom" if readonly and self.type is Bus.AHCI else "disk"
        return disk_xml(disk_type, device, source, slot, BUSES[self.type][0], iotype=self.iotype.value,
                        serial=self.serial, logical=self.logical_sectorsize, physical=self.physical_sectorsize,
                        fmt=fmt, readonly=readonly)
