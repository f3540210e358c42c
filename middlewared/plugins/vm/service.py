"""The vm service, composed of its parts: records, lifecycle, host information, memory, clone."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

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

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


class VMService(VMLifecycleMixin, VMInfoMixin, VMConsoleMixin, VMMemoryMixin, VMCloneMixin, VMStatsMixin,
                VMImportMixin, VMSerialMixin, VMRecords):
    """vm.*: virtual machines."""

    namespace = "vm"

    def __init__(self, middleware: "Middleware") -> None:
        super().__init__(middleware)
        # Tasks the plugin runs beside the API (autostart), cancelled at teardown.
        self.background: set[asyncio.Task[None]] = set()
        # The web console's HTTP side (spice-html5 and its WebSocket bridges).
        self.console_http = WebConsole(middleware, self.web_consoles, self.get_instance)
