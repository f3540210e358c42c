"""vm.snapshot.*: snapshots of VMs (qcow2 disks, RAM, firmware variables) as a tree per VM."""
from __future__ import annotations

from typing import TYPE_CHECKING

from middlewared.plugin import EventSpec, Plugin
from middlewared.plugins.vm import vm_service
from middlewared.plugins.vm_snapshot.service import COLLECTION, READ, VMSnapshotService

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


async def setup(middleware: "Middleware") -> None:
    """Count the stored snapshots, show the counts in vm.query, remove snapshots with their VM."""
    service = middleware.service_of(VMSnapshotService)
    await service.load_counts()
    vms = vm_service(middleware)
    vms.entry_extensions = (*vms.entry_extensions, service.entry_fields)
    vms.delete_hooks = (*vms.delete_hooks, service.forget_vm)


PLUGIN = Plugin(name="vm_snapshot", services=(VMSnapshotService,), depends=("vm", "vm_device"), setup=setup,
                events=(EventSpec(COLLECTION, "Changes of VM snapshots.", READ),))
