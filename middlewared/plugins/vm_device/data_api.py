"""vm.device.resize/import_disk/export_disk/virtual_size: disk images grown, brought in and copied out."""
from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
import time
from typing import TYPE_CHECKING, Any, Callable, Mapping

from middlewared.errors import CallError
from middlewared.job import Job
from middlewared.plugins.vm.model import VMRecord, VMState
from middlewared.plugins.vm.template import refuse_template
from middlewared.plugins.vm_device import import_export as io
from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device import resize as growth
from middlewared.plugins.vm_device.disk import ZVOL_NAME
from middlewared.plugins.vm_device.intents import VOLUME, Leftover

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.service import VMDeviceService

WRITE, READ = ("VM_DEVICE_WRITE",), ("VM_DEVICE_READ",)
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

PATH: dict[str, Any] = {"type": "string", "minLength": 1, "pattern": r"^/[^{}]*$"}
IMPORT: dict[str, Any] = {
    "title": "data", "type": "object", "required": ["source", "zvol_name"], "additionalProperties": False,
    "description": "The image to import and the volume to make of it.",
    "properties": {
        "source": {**PATH, "description": "Image file inside [storage] roots."},
        "source_format": {"type": ["string", "null"], "enum": [None, *io.IMPORT_FORMATS], "default": None,
                          "description": "Its format; null: detected (qcow2, vmdk, vhdx, vdi or raw)."},
        "zvol_name": {"type": "string", "pattern": ZVOL_NAME,
                      "description": "The new volume as \"<pool>/<volume>\" (a DISK device's zvol_name)."},
        "format": {"type": "string", "enum": ["qcow2", "raw"], "default": "qcow2",
                   "description": "Format of the new volume (qcow2 can hold snapshots)."},
    },
}
IMPORTED: dict[str, Any] = {
    "title": "result", "type": "object", "description": "The new volume.",
    "properties": {
        "zvol_name": {"type": "string", "description": "\"<pool>/<volume>\"."},
        "path": {"type": "string", "description": "Path of the volume."},
        "format": {"type": "string", "description": "Its format."},
        "size": {"type": "integer", "description": "Its size in bytes (the image's virtual size)."},
        "source": {"type": "object", "description": "The imported image: path, format, virtual_size, actual_size."},
    },
}
EXPORT: dict[str, Any] = {
    "title": "options", "type": "object", "required": ["path"], "additionalProperties": False,
    "description": "Where to write the copy.",
    "properties": {
        "path": {**PATH, "description": "New file inside [storage] roots (it must not exist; its directory must)."},
        "format": {"type": "string", "enum": list(io.EXPORT_FORMATS), "default": "qcow2",
                   "description": "Format of the copy."},
    },
}
VIRTUAL_SIZE: dict[str, Any] = {
    "title": "data", "type": "object", "required": ["path"], "additionalProperties": False,
    "description": "The image.",
    "properties": {"path": {**PATH, "description": "Image file inside [storage] roots."}},
}


async def resize(service: "VMDeviceService", id_: int, options: dict[str, Any]) -> dict[str, Any]:
    """Grow a DISK volume or RAW file (never shrink it), after checking the free space where it lives; a
    running guest is told at once and sees the new size without a restart."""
    device = await service._stored(id_)
    a = device["attributes"]
    typed = _with_image(service, id_, a, "resized")
    vm = await service.vms.get_instance(device["vm"])
    refuse_template(vm, "grow its disks")
    storage = await typed.image(await service.manager.host(vm["id"]))
    size = options["size"]
    growth.check_growth(storage, size)
    running = vm["status"]["state"] != VMState.STOPPED
    await growth.grow(service.vms.hypervisor, VMRecord.from_row(vm).domain_name, running, storage, size)
    stored = typed.resized(a, size)
    if stored is not None:
        attributes = json.dumps(stored)

        def store(db: sqlite3.Connection) -> None:
            db.execute("UPDATE vm_device SET attributes = ? WHERE id = ?", (attributes, id_))
        await service.vms._write(store, device["vm"])
    entry = await service.get_instance(id_)
    service.middleware.send_event("vm.device.query", "CHANGED", id=id_, fields=entry)
    service.middleware.send_event("vm.query", "CHANGED", id=vm["id"], fields=await service.vms.get_instance(vm["id"]))
    return entry


async def import_disk(service: "VMDeviceService", data: dict[str, Any], *, job: Job) -> dict[str, Any]:
    """Copy a disk image (qcow2, VMDK, VHDX, VDI or raw, under the storage roots) into a new volume of a
    storage pool, for a DISK device's zvol_name; the percentage is qemu-img's own. An abort or a failure
    leaves no volume behind."""
    job.set_progress(0, f"Importing {data['source']}")
    result = await service.import_volume(data["source"], data["source_format"], data["zvol_name"], data["format"],
                                         lambda percent: job.set_progress(percent, f"Copying {data['source']}"),
                                         job.log)
    # Imported: the user's volume now, though no row names it yet (a kill before this removes it at restart).
    await service.manager.intents.forget([result["zvol_name"]])
    return result


async def import_volume(service: "VMDeviceService", source: str, source_format: str | None, zvol_name: str, fmt: str,
                        progress: Callable[[float], None], log: Callable[[str], None] = lambda _: None
                        ) -> dict[str, Any]:
    """Copy an image under the storage roots into a new volume (import_disk's work, also for vm.import_ova); log
    gets what each step took."""
    began = time.monotonic()
    host = await service.manager.host()
    source = io.confined(source, host.roots, "source")
    image = await asyncio.to_thread(io.inspect, source, source_format)
    log(f"inspected the source: {(time.monotonic() - began) * 1000:.0f} ms ({source}: {image.format}, "
        f"{image.virtual_size} bytes)")
    pool_name, _, name = zvol_name.partition("/")
    if not await host.pool_active(pool_name):
        raise CallError(f"Storage pool {pool_name} does not exist or is not active", errno.ENOENT)
    # Recorded until the caller's row (vm.import_ova) or the job's success (import_disk) owns the volume.
    async with host.making(Leftover(VOLUME, f"{pool_name}/{name}")):
        volume = await io.import_image(service.vms.hypervisor, image, pool_name, name, fmt, progress, log)
    return {"zvol_name": volume.zvol_name, "path": volume.path, "format": fmt, "size": volume.capacity,
            "source": io.describe(image)}


async def export_disk(service: "VMDeviceService", id_: int, options: dict[str, Any], *, job: Job) -> str:
    """Copy a stopped VM's DISK volume or RAW file to a new qcow2 or raw file under the storage roots, with
    qemu-img's percentage; an abort or a failure leaves no file behind."""
    device = await service._stored(id_)
    typed = _with_image(service, id_, device["attributes"], "exported")
    vm = await service.vms.get_instance(device["vm"])
    if vm["status"]["state"] != VMState.STOPPED:
        raise CallError(f"VM {vm['name']} is running: stop it for a consistent copy", errno.EBUSY)
    host = await service.manager.host(vm["id"])
    target = io.confined(options["path"], host.roots, "path")
    storage = await typed.image(host)
    fmt = storage.volume.format if storage.volume is not None else "raw"
    await io.export_image(storage.path, fmt, target, options["format"],
                          lambda percent: job.set_progress(percent, f"Copying to {target}"))
    return target


async def virtual_size(service: "VMDeviceService", data: dict[str, Any]) -> int:
    """The size in bytes a guest sees of a disk image under the storage roots (format detected)."""
    host = await service.manager.host()
    path = io.confined(data["path"], host.roots, "path")
    return (await asyncio.to_thread(io.inspect, path, None)).virtual_size


def _with_image(service: "VMDeviceService", id_: int, attributes: Mapping[str, Any], done: str) -> Device:
    """The typed device of stored attributes, refused (EINVAL) unless its type owns a disk image."""
    typed = service.manager.types.typed(attributes)
    if typed is None or not typed.has_image:
        kinds = " and ".join(t.dtype for t in service.manager.types if t.has_image)
        raise CallError(f"Device {id_} is a {attributes['dtype']}: only {kinds} devices can be {done}", errno.EINVAL)
    return typed
