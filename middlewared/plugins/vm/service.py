"""The vm service, composed of its parts: records, lifecycle, host information, memory, clone."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from middlewared.crud import crud_schemas
from middlewared.plugins.vm import schemas as S
from middlewared.plugins.vm.clone import VMCloneMixin
from middlewared.plugins.vm.console import VMConsoleMixin
from middlewared.plugins.vm.info import VMInfoMixin
from middlewared.plugins.vm.lifecycle import VMLifecycleMixin
from middlewared.plugins.vm.memory import VMMemoryMixin
from middlewared.plugins.vm.ova_api import VMImportMixin
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm.serial_api import VMSerialMixin
from middlewared.plugins.vm.stats_api import VMStatsMixin
from middlewared.plugins.vm.web_console_http import WebConsole
from middlewared.service import api_method

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


CRUD = crud_schemas("vm", "VM", "VM", S.VM_ENTRY, S.VM_CREATE, S.VM_UPDATE, (S.DELETE_OPTIONS,))


class VMService(VMLifecycleMixin, VMInfoMixin, VMConsoleMixin, VMMemoryMixin, VMCloneMixin, VMStatsMixin,
                VMImportMixin, VMSerialMixin, VMRecords):
    """vm.*: virtual machines."""

    namespace = "vm"

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=CRUD.query, result=CRUD.query_result, roles=CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """VMs matching the filters, each with its live libvirt status, its devices (display passwords masked) and
        whether it has a display."""
        return await super().query(filters, options, app=app)

    @api_method(params=CRUD.get_instance, result=CRUD.entry, roles=CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One VM by id, as vm.query shows it; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=CRUD.create, result=CRUD.entry, roles=CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a VM and its devices: validated against the host, then stored and defined in libvirt in one step (a
        failure leaves no row, domain or new volume behind)."""
        return await super().create(data)

    @api_method(params=CRUD.update, result=CRUD.entry, roles=CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a VM's fields and, when devices is given, its devices (listed ones kept or changed, new ones
        created, missing ones removed); the domain is redefined (a running VM cannot be renamed)."""
        return await super().update(id_, data)

    @api_method(params=CRUD.delete, result=CRUD.deleted, roles=CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete a VM (a running one only with force): its row, libvirt domain, NVRAM and logs, and with zvols the
        volumes of its DISK devices."""
        return await super().delete(id_, options)

    def __init__(self, middleware: "Middleware") -> None:
        super().__init__(middleware)
        # Tasks the plugin runs beside the API (autostart), cancelled at teardown.
        self.background: set[asyncio.Task[None]] = set()
        # The web console's HTTP side (spice-html5 and its WebSocket bridges).
        self.console_http = WebConsole(middleware, self.web_consoles, self.get_instance)
