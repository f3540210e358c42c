"""RAW: a disk image file under the storage roots, created sparse when it does not exist yet."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Mapping

from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.paths import PathError, confine, reachability_error
from middlewared.plugins.vm_device.resize import Storage, file_storage
from middlewared.plugins.vm_device.intents import FILE, Leftover
from middlewared.plugins.vm_device.resources import CreateFile, GrowFile
from middlewared.plugins.vm_device.storage import PATH, STORAGE_PROPERTIES, StorageDevice, confined_path

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check

logger = logging.getLogger(__name__)


def _size(path: str) -> int | None:
    try:
        return os.stat(path).st_size
    except OSError:
        return None


@dataclass(frozen=True, kw_only=True)
class Raw(StorageDevice):
    """A raw image file as a guest disk."""

    path: str
    exists: bool
    boot: bool
    size: int | None
    readonly: bool

    dtype = "RAW"
    delete_option = "raw_file"
    has_image = True
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
        "readonly": {"type": "boolean", "default": False, "description": "The guest may only read the disk."},
    }

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        real = confined_path(check, p)
        if real is None:
            return a
        a["path"] = real
        if a["exists"]:
            cls._existing(p, check, real)
        else:
            cls._new(p, check, real)
        a["exists"] = True
        problem = reachability_error(real, await check.host.qemu_user())
        if problem:
            check.error(p, "path", problem, errno.EACCES)
        cls.check_storage(p, check, a)
        return a

    @staticmethod
    def _existing(p: Proposal, check: "Check", path: str) -> None:
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

    @staticmethod
    def _new(p: Proposal, check: "Check", path: str) -> None:
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

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        return [self.storage_xml("file", {"file": self.path}, slot, readonly=self.readonly)]

    async def unavailable(self, host: "Host") -> list[str]:
        return await file_problems(self.path, host)

    def identity(self) -> str:
        return self.path

    async def clone_attributes(self, attributes: Mapping[str, Any], new_name: str, host: "Host",
                               linked: bool) -> dict[str, Any] | None:
        if linked:
            # A raw file has no qcow2 header to name a backing file, and a copy would not be linked.
            raise CallError(f"RAW disk {self.path} is an image file, which a linked clone cannot overlay: make a full "
                            "clone, or import it into a DISK volume (vm.device.import_disk)", errno.EINVAL)
        logger.info("RAW disks must be copied manually: %s is left out of clone %s", self.path, new_name)
        return None

    async def image(self, host: "Host") -> "Storage":
        return await file_storage(self.path, host)

    def resized(self, attributes: Mapping[str, Any], size: int) -> dict[str, Any] | None:
        # The stored size follows the file: a later update must not read it as a shrink.
        return {**attributes, "size": size}

    async def storage_missing(self, host: "Host") -> str | None:
        if not await asyncio.to_thread(os.path.isfile, self.path):
            return f"{self.path} does not exist"
        return None

    def storage_leftover(self) -> Leftover | None:
        return Leftover(FILE, self.path)

    async def remove_storage(self, host: "Host") -> None:
        try:
            # Resolved again: the file must still be inside the roots (a symlink may have been swapped).
            await asyncio.to_thread(os.unlink, confine(self.path, host.roots))
        except (OSError, PathError) as e:
            raise CallError(f"Failed to destroy {self.path}: {e}", errno.EIO) from e


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
