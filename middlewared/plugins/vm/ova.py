"""OVA archives and their OVF descriptors (DMTF DSP0243): what a VM record can be made of, and what not."""
from __future__ import annotations

import re
import tarfile
from dataclasses import dataclass, field
from typing import Callable

from lxml import etree

OVF = "http://schemas.dmtf.org/ovf/envelope/1"
RASD = "http://schemas.dmtf.org/wbem/wscim/1/cim-schema/2/CIM_ResourceAllocationSettingData"
# CIM ResourceType values (DSP0243 / CIM_ResourceAllocationSettingData).
CPU, MEMORY, ETHERNET, DISK = "3", "4", "10", "17"
# Disk controllers: the disks come over as AHCI disks, which every guest has drivers for.
CONTROLLERS = {"5": "IDE controller", "6": "SCSI controller", "20": "SATA controller"}
_UNITS = re.compile(r"byte\s*\*\s*2\s*\^\s*(\d+)", re.I)
_NAMED_UNITS = {"bytes": 0, "kilobytes": 10, "megabytes": 20, "gigabytes": 30, "terabytes": 40}


class OvfError(ValueError):
    """A descriptor or archive that cannot be imported; the message says why."""


@dataclass(frozen=True)
class OvfDisk:
    """A virtual disk: the archive member holding its image and its capacity in bytes."""

    href: str
    capacity: int


@dataclass
class OvfSystem:
    """The parts of an OVF VirtualSystem a VM record takes, and the rest, described."""

    name: str
    vcpus: int = 1
    memory_mib: int = 512
    disks: list[OvfDisk] = field(default_factory=list)
    nics: list[str] = field(default_factory=list)
    unknown: list[str] = field(default_factory=list)


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


def scale(units: str | None) -> int:
    """The multiplier of OVF allocation units ("byte * 2^20", "MegaBytes"; none: bytes)."""
    if not units:
        return 1
    match = _UNITS.search(units)
    if match:
        return 1 << int(match[1])
    if units.strip().lower() in _NAMED_UNITS:
        return 1 << _NAMED_UNITS[units.strip().lower()]
    raise OvfError(f"unknown allocation units {units!r}")


def _rasd(item: etree._Element, name: str) -> str | None:
    text = item.findtext(_q(RASD, name))
    return text.strip() if text is not None else None


def parse(descriptor: bytes) -> OvfSystem:
    """The first VirtualSystem of an OVF descriptor."""
    try:
        root = etree.fromstring(descriptor, etree.XMLParser(resolve_entities=False, no_network=True))
    except etree.XMLSyntaxError as e:
        raise OvfError(f"the OVF descriptor is not XML: {e}") from e
    files = {f.get(_q(OVF, "id")): f.get(_q(OVF, "href")) for f in root.iter(_q(OVF, "File"))}
    disks = {}
    for d in root.iter(_q(OVF, "Disk")):
        capacity = int(d.get(_q(OVF, "capacity")) or 0) * scale(d.get(_q(OVF, "capacityAllocationUnits")))
        disks[d.get(_q(OVF, "diskId"))] = OvfDisk(str(files.get(d.get(_q(OVF, "fileRef"))) or ""), capacity)
    system = root.find(f".//{_q(OVF, 'VirtualSystem')}")
    if system is None:
        raise OvfError("the OVF descriptor has no VirtualSystem")
    out = OvfSystem(system.findtext(_q(OVF, "Name")) or system.get(_q(OVF, "id")) or "imported")
    for item in system.iter(_q(OVF, "Item")):
        _item(item, disks, out)
    return out


def _item(item: etree._Element, disks: dict[str | None, OvfDisk], out: OvfSystem) -> None:
    kind, name = _rasd(item, "ResourceType"), _rasd(item, "ElementName") or "item"
    quantity = int(_rasd(item, "VirtualQuantity") or 0)
    if kind == CPU:
        out.vcpus = max(1, quantity)
    elif kind == MEMORY:
        out.memory_mib = max(1, quantity * scale(_rasd(item, "AllocationUnits")) >> 20)
    elif kind == DISK:
        ref = (_rasd(item, "HostResource") or "").rpartition("/")[2]
        disk = disks.get(ref)
        if disk is None or not disk.href:
            out.unknown.append(f"{name}: disk {ref!r} has no image in the archive (left out)")
        else:
            out.disks.append(disk)
    elif kind == ETHERNET:
        out.nics.append(_rasd(item, "ResourceSubType") or "")
    elif kind not in CONTROLLERS:
        subtype = _rasd(item, "ResourceSubType")
        out.unknown.append(f"{name} (resource type {kind}{', ' + subtype if subtype else ''}): not imported")


def vm_name(name: str) -> str:
    """A VM name (letters, digits, _ . -) made of an OVF name."""
    cleaned = re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_.-")
    return cleaned[:200] or "imported"


def nic_model(subtype: str) -> str:
    """The NIC type for an OVF Ethernet subtype (virtio stays virtio; E1000, VmxNet3 and others become E1000)."""
    return "VIRTIO" if "virtio" in subtype.lower() else "E1000"


def read_descriptor(archive: str) -> bytes:
    """The .ovf member of an OVA (a tar archive)."""
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".ovf")), None)
        if member is None:
            raise OvfError(f"{archive} holds no .ovf descriptor")
        data = tar.extractfile(member)
        assert data is not None
        return data.read()


def extract(archive: str, href: str, target: str, stop: Callable[[], bool]) -> None:
    """Copy one member of an OVA to target (a path of our choosing, never one taken from the archive)."""
    with tarfile.open(archive) as tar:
        member = next((m for m in tar.getmembers() if m.isfile() and m.name == href), None)
        if member is None:
            raise OvfError(f"{archive} has no member {href!r} (named by the descriptor)")
        source = tar.extractfile(member)
        assert source is not None
        with open(target, "wb") as out:
            while chunk := source.read(1 << 20):
                if stop():
                    raise OvfError("cancelled")
                out.write(chunk)
