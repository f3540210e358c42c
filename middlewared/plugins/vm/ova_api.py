"""vm.import_ova: an OVA archive (OVF descriptor and disk images) becomes a VM record with its disks and NICs."""
from __future__ import annotations

import asyncio
import errno
import os
import threading
import uuid
from typing import TYPE_CHECKING, Any, AsyncContextManager, Callable, Protocol, cast

from middlewared.errors import CallError
from middlewared.job import Job
from middlewared.plugins.vm import ova
from middlewared.plugins.vm.schemas import VM_CREATE, VM_ENTRY
from middlewared.schema import apply_defaults

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords

IMPORT_OVA: dict[str, Any] = {
    "title": "data", "type": "object", "required": ["path"], "additionalProperties": False,
    "description": "The archive and what to make of it.",
    "properties": {
        "path": {"type": "string", "minLength": 1, "pattern": r"^/[^{}]*$",
                 "description": "The .ova file (a tar archive with an OVF descriptor), inside [storage] roots."},
        "name": {"type": ["string", "null"], "default": None, "pattern": r"^[A-Za-z0-9][A-Za-z0-9_.-]*$",
                 "description": "Name of the new VM; null: the OVF's name (characters other than letters, digits, "
                                "_ . - replaced)."},
        "pool": {"type": ["string", "null"], "default": None,
                 "description": "Storage pool of the new DISK volumes (qcow2); null: [storage] pool."},
        "nic_attach": {"type": ["string", "null"], "default": None,
                       "description": "Where the NICs attach (see vm.device.nic_attach_choices); null: the "
                                      "interface of the IPv4 default route."},
    },
}
IMPORTED: dict[str, Any] = {
    "title": "result", "type": "object", "description": "The new VM and what of the OVF it does not carry.",
    "properties": {
        "vm": VM_ENTRY,
        "unknown": {"type": "array", "items": {"type": "string", "description": "One left-out part."},
                    "description": "Parts of the OVF that were not imported, each described."},
    },
}


class VolumeImporter(Protocol):
    """What vm.import_ova needs of vm.device (a Python call, not an API one)."""

    async def import_volume(self, source: str, source_format: str | None, zvol_name: str, fmt: str,
                            progress: Callable[[float], None]) -> dict[str, Any]: ...

    def scratch_dir(self, path: str) -> AsyncContextManager[None]: ...


async def import_ova(vms: "VMRecords", data: dict[str, Any], *, job: Job) -> dict[str, Any]:
    """Create a VM from an OVA: its CPUs, memory, disks (converted into new qcow2 volumes, with qemu-img's
    percentages) and NICs. What the OVF describes beyond that is listed in `unknown` and the job log. An
    abort or a failure leaves no volume and no VM behind."""
    # Imported here: vm_device's package imports this plugin's.
    from middlewared.plugins.vm_device.paths import PathError, confine, real_roots
    storage = vms.middleware.config.storage
    roots = real_roots(storage.roots)
    try:
        path = confine(data["path"], roots)
        system = ova.parse(await asyncio.to_thread(ova.read_descriptor, path))
    except (PathError, ova.OvfError, OSError) as e:
        raise CallError(f"{data['path']}: {e}", errno.EINVAL) from e
    name = data["name"] or ova.vm_name(system.name)
    if name in {r["name"] for r in (await vms._records()).values()}:
        raise CallError(f"A VM named {name} already exists", errno.EEXIST)
    for line in system.unknown:
        job.log(line)
    workdir = os.path.join(roots[0], f".ova-import-{uuid.uuid4().hex[:12]}")
    volumes: list[dict[str, Any]] = []
    # The extracted disks are removed afterwards, also by the next start of a daemon killed meanwhile.
    async with cast(VolumeImporter, vms.middleware.service("vm.device")).scratch_dir(workdir):
        try:
            await _import_disks(vms, job, path, system, workdir, f"{data['pool'] or storage.pool}/{name}", volumes)
            devices = [{"attributes": {"dtype": "DISK", "zvol_name": v["zvol_name"], "type": "AHCI"},
                        "order": 1001 + i} for i, v in enumerate(volumes)]
            devices += [{"attributes": {"dtype": "NIC", "type": ova.nic_model(model),
                                        "nic_attach": data["nic_attach"]}} for model in system.nics]
            job.set_progress(97, f"Creating VM {name}")
            vm = await vms.create(apply_defaults(VM_CREATE, {
                "name": name, "vcpus": system.vcpus, "memory": system.memory_mib, "autostart": False,
                "devices": devices}))
        except BaseException:
            await vms.devices.delete_volumes([{"attributes": {"dtype": "DISK", **v}} for v in volumes])
            raise
    return {"vm": vm, "unknown": system.unknown}


async def _import_disks(vms: "VMRecords", job: Job, archive: str, system: ova.OvfSystem, workdir: str, prefix: str,
                        volumes: list[dict[str, Any]]) -> None:
    """Extract and convert each disk; volumes gets each new volume at once (for the caller's clean-up)."""
    importer = cast(VolumeImporter, vms.middleware.service("vm.device"))
    total = sum(max(d.capacity, 1) for d in system.disks) or 1
    done = 0
    for i, disk in enumerate(system.disks):
        local, weight = os.path.join(workdir, f"disk{i}"), max(disk.capacity, 1)
        job.set_progress(95 * done / total, f"Extracting {disk.href}")
        stop = threading.Event()
        try:
            await asyncio.to_thread(ova.extract, archive, disk.href, local, stop.is_set)
        except BaseException:
            stop.set()
            raise

        def progress(percent: float, before: int = done, weight: int = weight, href: str = disk.href) -> None:
            job.set_progress(95 * (before + weight * percent / 100) / total, f"Converting {href}")
        volumes.append(await importer.import_volume(local, None, f"{prefix}-disk{i}", "qcow2", progress))
        await asyncio.to_thread(os.unlink, local)
        done += weight
