"""vm.clone: a new VM with the same settings, new identity, copied disks (or, from a template, overlays on its
volumes: a linked clone)."""
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
CLONE_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "How to clone (optional: vm.clone(id, name) makes a full clone, as on TrueNAS).",
    "properties": {
        "linked": {"type": "boolean", "default": False,
                   "description": "A linked clone of a template (Proxmox's linked clone): its DISK volumes are new "
                                  "qcow2 overlays whose backing files are the template's volumes, made at once and "
                                  "holding only what the clone writes. Only templates have linked clones; RAW disks "
                                  "(image files, not pool volumes) are refused, CD-ROMs are shared as in a full "
                                  "clone."},
    },
}


def clone_name(name: str, taken: set[str]) -> str:
    """The first free <name>_clone<N>, N from 0."""
    n = 0
    while f"{name}_clone{n}" in taken:
        n += 1
    return f"{name}_clone{n}"


async def clone(vms: "VMRecords", id_: int, name: str | None, options: dict[str, Any]) -> dict[str, Any]:
    """Clone a VM: new name, uuid, MACs and display ports; DISK volumes copied in the storage pool, or with linked
    (templates only) overlays on the template's volumes. The clone is never a template itself."""
    vm = await vms.get_instance(id_)
    linked = bool(options.get("linked"))
    if linked and not vm["template"]:
        raise CallError(f"VM {vm['name']} is not a template: only templates have linked clones (make it one with "
                        "vm.update template true while it is stopped), or make a full clone", errno.EINVAL)
    taken = {r["name"] for r in (await vms._records()).values()}
    if name is None:
        name = clone_name(vm["name"], taken)
    elif name in taken:
        raise CallError(f"A VM named {name} already exists", errno.EEXIST)
    devices = await vms.devices.prepare_clone(vm, name, linked)
    data = {k: vm[k] for k in FIELDS}
    data.update(name=name, uuid=None, devices=devices, template=False)
    try:
        new = await vms.do_create(data, clone_of=(id_, linked))
    except BaseException:
        await vms.devices.delete_volumes(devices)
        raise
    vms.middleware.send_event("vm.query", "ADDED", id=new["id"], fields=new)
    return new
