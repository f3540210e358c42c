"""CDROM: an ISO (any readable file) under the storage roots; its media can be changed while the VM runs."""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, ClassVar, Mapping

from lxml import etree

from middlewared.plugins.vm_device.base import DeviceType
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.paths import PathError, confine, reachability_error
from middlewared.plugins.vm_device.raw import file_problems
from middlewared.plugins.vm_device.storage import PATH, check_unique_path, disk_xml

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check


class Cdrom(DeviceType):
    """A SATA CD-ROM drive with an image file as its media."""

    dtype = "CDROM"
    description = "A CD-ROM drive whose media is an image file under the storage roots."
    required = ("path",)
    properties = {
        "path": {**PATH, "description": "Path of the ISO image, inside [storage] roots (stored with symlinks "
                                        "resolved); it must exist and be readable."},
    }
    bootable: ClassVar[bool] = True
    # Upstream's read-time default: CD-ROMs boot before disks.
    default_order: ClassVar[int] = 1000

    async def normalize(self, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        try:
            a["path"] = confine(a["path"], check.host.roots)
        except PathError as e:
            check.error(p, "path", str(e))
            return a
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

    def live_changeable(self, old: Mapping[str, Any], new: Mapping[str, Any]) -> bool:
        # Media change: QEMU swaps the image of the drive in place (virDomainUpdateDeviceFlags).
        return dict(old, path=None) == dict(new, path=None)

    def target_prefix(self, attributes: Mapping[str, Any]) -> str | None:
        return "sd"

    def to_xml(self, attributes: Mapping[str, Any], slot: Slot) -> list[etree._Element]:
        return [disk_xml("file", "cdrom", {"file": attributes["path"]}, slot, "sata", readonly=True)]

    async def unavailable(self, attributes: Mapping[str, Any], host: "Host") -> list[str]:
        return await file_problems(attributes["path"], host)

    def identity(self, attributes: Mapping[str, Any]) -> str:
        return str(attributes.get("path") or "")
