"""vm.device.*: one module per device type (schema, validation, XML), storage volumes, choices."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from middlewared.plugin import Plugin
from middlewared.plugins.vm import vm_service
from middlewared.plugins.vm_device.manager import DeviceManager
from middlewared.plugins.vm_device.service import VMDeviceService

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

def device_service(middleware: "Middleware") -> VMDeviceService:
    """The vm.device service instance."""
    return middleware.service_of(VMDeviceService)


async def setup(middleware: "Middleware") -> None:
    """Install the device types on the vm service, then (once libvirt answers) make sure the storage pool exists."""
    vms = vm_service(middleware)
    manager = DeviceManager(vms, middleware.config.storage)
    # Before any await: the vm plugin's autostart task must not start VMs without their devices.
    vms.devices = manager
    vms.delete_hooks = (*vms.delete_hooks, manager.discard_files_of)
    device_service(middleware).manager = manager
    manager.starting = asyncio.get_running_loop().create_task(manager.start())


async def teardown(middleware: "Middleware") -> None:
    """Stop the pool set-up if it still waits for libvirt."""
    service = device_service(middleware)
    if hasattr(service, "manager") and service.manager.starting is not None:
        service.manager.starting.cancel()


PLUGIN = Plugin(name="vm_device", services=(VMDeviceService,), depends=("vm",), setup=setup, teardown=teardown)
