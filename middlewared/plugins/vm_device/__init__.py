"""vm.device.*: one module per device type (schema, validation, XML), storage volumes, choices."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from middlewared.plugin import Plugin
from middlewared.plugins.vm_device.service import VMDeviceService

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


def device_service(middleware: "Middleware") -> VMDeviceService:
    """The vm.device service instance."""
    return middleware.service_of(VMDeviceService)


async def setup(middleware: "Middleware") -> None:
    """Once libvirt answers, make sure the storage pool exists (in the background)."""
    manager = device_service(middleware).manager
    manager.starting = asyncio.get_running_loop().create_task(manager.start())


async def teardown(middleware: "Middleware") -> None:
    """Stop the pool set-up if it still waits for libvirt."""
    service = device_service(middleware)
    if service.manager.starting is not None:
        service.manager.starting.cancel()


PLUGIN = Plugin(name="vm_device", services=(VMDeviceService,), depends=("vm",), setup=setup, teardown=teardown)
