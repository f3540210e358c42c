"""The vm service, composed of its parts: records, lifecycle, host information, memory, clone."""
from __future__ import annotations

from middlewared.plugins.vm.clone import VMCloneMixin
from middlewared.plugins.vm.info import VMInfoMixin
from middlewared.plugins.vm.lifecycle import VMLifecycleMixin
from middlewared.plugins.vm.memory import VMMemoryMixin
from middlewared.plugins.vm.records import VMRecords


class VMService(VMLifecycleMixin, VMInfoMixin, VMMemoryMixin, VMCloneMixin, VMRecords):
    """vm.*: virtual machines."""

    namespace = "vm"

    async def max_vcpus(self) -> int:
        """Validation and vm.maximum_supported_vcpus agree on the limit."""
        return await self.maximum_supported_vcpus()
