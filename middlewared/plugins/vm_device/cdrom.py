"""CDROM: an ISO (any readable file) under the storage roots, or no media; its media can be changed (and
ejected) while the VM runs."""
from __future__ import annotations

import errno
import os
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar, Self

from lxml import etree

from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.paths import reachability_error
from middlewared.plugins.vm_device.raw import file_problems
from middlewared.plugins.vm_device.storage import PATH, check_unique_path, confined_path, disk_xml

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check


@dataclass(frozen=True, kw_only=True)
class Cdrom(Device):
    """A SATA CD-ROM drive with an image file as its media, or empty."""

    path: str | None

    dtype = "CDROM"
    description = "A CD-ROM drive whose media is an image file under the storage roots."
    required = ("path",)
    properties = {
        "path": {**PATH, "type": ["string", "null"],
                 "description": "Path of the ISO image, inside [storage] roots (stored with symlinks resolved); it "
                                "must exist and be readable. null: an empty drive (the media ejected; a running "
                                "guest sees it at once)."},
    }
    bootable: ClassVar[bool] = True
    # TrueNAS's read-time default: CD-ROMs boot before disks.
    default_order: ClassVar[int] = 1000

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        if a.get("path") is None:
            return a
        real = confined_path(check, p)
        if real is None:
            return a
        a["path"] = real
        if not os.path.isfile(a["path"]):
            check.error(p, "path", f"{p.attributes['path']} does not exist or is not a file", errno.ENOENT)
            return a
        if not os.access(a["path"], os.R_OK):
            check.error(p, "path", f"{p.attributes['path']} is not readable", errno.EACCES)
        problem = reachability_error(a["path"], await check.host.qemu_user())
        if problem:
            check.error(p, "path", problem, errno.EACCES)
        check_unique_path(check, p, a["path"])
        return a

    def live_changeable(self, new: Self) -> bool:
        # Media change or eject: QEMU swaps (or empties) the drive in place (virDomainUpdateDeviceFlags).
        return replace(self, path="") == replace(new, path="")

    def target_prefix(self) -> str | None:
        return "sd"

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        # An empty drive is a <disk> without <source>.
        source = {"file": self.path} if self.path else None
        return [disk_xml("file", "cdrom", source, slot, "sata", readonly=True)]

    async def unavailable(self, host: "Host") -> list[str]:
        return await file_problems(self.path, host) if self.path else []

    def identity(self) -> str:
        return self.path or ""
