"""vm.device.resize: grow a DISK or RAW device's image, also while its guest runs."""
from __future__ import annotations

import errno
import json
import sqlite3
from typing import TYPE_CHECKING, Any, Protocol

from middlewared.errors import CallError
from middlewared.plugins.vm.model import VMRecord
from middlewared.plugins.vm_device import resize
from middlewared.plugins.vm_device.schemas import DEVICE_ENTRY
from middlewared.service import api_method

if TYPE_CHECKING:
    from middlewared.middleware import Middleware
    from middlewared.plugins.vm.records import VMRecords
    from middlewared.plugins.vm_device.manager import DeviceManager

WRITE = ("VM_DEVICE_WRITE",)
DEVICE_ID: dict[str, Any] = {"title": "id", "type": "integer", "description": "Id of the device."}
RESIZE: dict[str, Any] = {
    "title": "options", "type": "object", "required": ["size"], "additionalProperties": False,
    "description": "The new size.",
    "properties": {
        # Block devices are counted in 512-byte sectors; QEMU rounds other sizes.
        "size": {"type": "integer", "minimum": 512, "multipleOf": 512,
                 "description": "New size in bytes, larger than the current one (a multiple of 512)."},
    },
}


class DataHost(Protocol):
    """What the disk data methods need of the service they are part of."""

    middleware: "Middleware"

    @property
    def manager(self) -> "DeviceManager": ...

    @property
    def vms(self) -> "VMRecords": ...

    async def _stored(self, id_: int) -> dict[str, Any]: ...

    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]: ...


class DeviceDataMixin:
    """Disk data methods of vm.device."""

    @api_method(params=[DEVICE_ID, RESIZE], result=DEVICE_ENTRY, roles=WRITE)
    async def resize(self: DataHost, id_: int, options: dict[str, Any]) -> dict[str, Any]:
        """Grow a DISK volume or RAW file (never shrink it), after checking the free space where it lives; a
        running guest is told at once and sees the new size without a restart."""
        device = await self._stored(id_)
        a = device["attributes"]
        if a["dtype"] not in ("DISK", "RAW"):
            raise CallError(f"Device {id_} is a {a['dtype']}: only DISK and RAW devices can be resized", errno.EINVAL)
        vm = await self.vms.get_instance(device["vm"])
        storage = await resize.storage_of(a, await self.manager.host(vm["id"]))
        size = options["size"]
        resize.check_growth(storage, size)
        running = vm["status"]["state"] != "STOPPED"
        await resize.grow(self.vms.hypervisor, VMRecord.from_row(vm).domain_name, running, storage, size)
        if a["dtype"] == "RAW":
            # The stored size follows the file: a later update must not read it as a shrink.
            attributes = json.dumps({**a, "size": size})

            def store(db: sqlite3.Connection) -> None:
                db.execute("UPDATE vm_device SET attributes = ? WHERE id = ?", (attributes, id_))
            await self.vms._write(store)
        entry = await self.get_instance(id_)
        self.middleware.send_event("vm.device.query", "CHANGED", id=id_, fields=entry)
        self.middleware.send_event("vm.query", "CHANGED", id=vm["id"], fields=await self.vms.get_instance(vm["id"]))
        return entry
