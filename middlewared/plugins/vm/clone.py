"""vm.clone: a new VM with the same settings, new identity, copied disks."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from middlewared.errors import CallError
from middlewared.plugins.vm.schemas import FIELDS

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords

CLONE_NAME: dict[str, Any] = {
    "title": "name", "type": ["string", "null"], "default": None, "pattern": FIELDS["name"]["pattern"],
    "description": "Name of the clone; null picks <name>_clone<N>.",
}


def clone_name(name: str, taken: set[str]) -> str:
    """The first free <name>_clone<N>, N from 0."""
    n = 0
    while f"{name}_clone{n}" in taken:
        n += 1
    return f"{name}_clone{n}"


async def clone(vms: "VMRecords", id_: int, name: str | None) -> dict[str, Any]:
    """Clone a VM: new name, uuid, MACs and display ports; DISK volumes copied in the storage pool."""
    vm = await vms.get_instance(id_)
    taken = {r["name"] for r in (await vms._records()).values()}
    if name is None:
        name = clone_name(vm["name"], taken)
    elif name in taken:
        raise CallError(f"A VM named {name} already exists", errno.EEXIST)
    devices = await vms.devices.prepare_clone(vm, name)
    data = {k: vm[k] for k in FIELDS}
    data.update(name=name, uuid=None, devices=devices)
    try:
        new = await vms.do_create(data)
    except BaseException:
        await vms.devices.delete_volumes(devices)
        raise
    vms.middleware.send_event("vm.query", "ADDED", id=new["id"], fields=new)
    return new
