"""RAW: a disk image file under the storage roots, created sparse when it does not exist yet."""
from __future__ import annotations

import errno
import os
from typing import TYPE_CHECKING, Any, Mapping

from lxml import etree

from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.paths import PathError, confine, reachability_error
from middlewared.plugins.vm_device.resources import CreateFile, GrowFile
from middlewared.plugins.vm_device.storage import PATH, STORAGE_PROPERTIES, StorageDevice

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


class Raw(StorageDevice):
    """A raw image file as a guest disk."""

    dtype = "RAW"
    description = "A disk backed by a raw image file under the storage roots."
    required = ("path",)
    properties = {
        "path": {**PATH, "description": "Path of the image file, inside [storage] roots (stored with symlinks "
                                        "resolved)."},
        **STORAGE_PROPERTIES,
        "exists": {"type": "boolean", "default": False,
                   "description": "Whether the file exists already; false creates it (sparse, `size` bytes). "
                                  "Stored as true once it exists."},
        # Upstream stores `boot` without using it: every RAW disk takes part in the boot order.
        "boot": {"type": "boolean", "default": False,
                 "description": "Kept for compatibility; RAW disks are always in the boot order."},
        "size": {"type": ["integer", "null"], "default": None, "minimum": 1,
                 "description": "Size in bytes: of the new file, or to grow an existing one to."},
    }

    async def normalize(self, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        try:
            real = confine(a["path"], check.host.roots)
        except PathError as e:
            check.error(p, "path", str(e))
            return a
        a["path"] = real
        if a["exists"]:
            self._existing(p, check, real)
        else:
            self._new(p, check, real)
        a["exists"] = True
        problem = reachability_error(real, await check.host.qemu_user())
        if problem:
            check.error(p, "path", problem, errno.EACCES)
        self.check_storage(p, check, a)
        return a

    def _existing(self, p: Proposal, check: "Check", path: str) -> None:
        if not os.path.isfile(path):
            check.error(p, "path", 'Path must exist when "exists" is set.', errno.ENOENT)
            return
        current, size = _size(path) or 0, p.attributes["size"]
        if size is None or size == current:
            return
        if size < current:
            check.error(p, "size", f"The file has {current} bytes; shrinking it is not supported")
        else:
            check.add_action(GrowFile(path, current, size))

    def _new(self, p: Proposal, check: "Check", path: str) -> None:
        if os.path.lexists(path):
            check.error(p, "path", 'Path must not exist when "exists" is unset.', errno.EEXIST)
        elif not os.path.isdir(os.path.dirname(path)):
            check.error(p, "path", f"Directory {os.path.dirname(path)} does not exist", errno.ENOENT)
        elif p.attributes["size"] is None:
            check.error(p, "size", "Please provide a valid size for the raw file.")
        elif any(isinstance(x, CreateFile) and x.path == path for x in check.actions):
            check.error(p, "path", f"{path} is created twice", errno.EEXIST)
        else:
            check.add_action(CreateFile(path, p.attributes["size"]))

    def to_xml(self, attributes: Mapping[str, Any], slot: Slot) -> list[etree._Element]:
        return [self.storage_xml("file", {"file": attributes["path"]}, attributes, slot)]

    async def unavailable(self, attributes: Mapping[str, Any], host: "Host") -> list[str]:
        return await file_problems(attributes["path"], host)

    def identity(self, attributes: Mapping[str, Any]) -> str:
        return str(attributes.get("path") or "")


async def file_problems(path: str, host: "Host") -> list[str]:
    """Why a RAW or CDROM file cannot be used for a start: outside the roots, missing, unreachable."""
    try:
        real = confine(path, host.roots)
    except PathError as e:
        return [str(e)]
    if not os.path.isfile(real):
        return [f"{path} does not exist"]
    problem = reachability_error(real, await host.qemu_user())
    return [problem] if problem else []
