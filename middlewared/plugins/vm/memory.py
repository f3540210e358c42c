"""Host memory for guests: vm.get_available_memory, vm.get_vmemory_in_use and the start-time check."""
from __future__ import annotations

import asyncio
import errno
from typing import Any, Iterable, Mapping, Protocol

import psutil

from middlewared.errors import CallError
from middlewared.plugins.vm.model import VMState


MiB = 1024 * 1024
# Keep 10% of MemAvailable for the host, as upstream does.
HOST_SHARE = 0.9

OVERCOMMIT: dict[str, Any] = {
    "title": "overcommit", "type": "boolean", "default": False,
    "description": "Count only memory guests already use (true), or also what running guests may still "
                   "grow into up to their configured size (false).",
}
AVAILABLE_RESULT: dict[str, Any] = {
    "title": "result", "type": "integer", "minimum": 0,
    "description": "Bytes of host memory a new guest can be given.",
}
IN_USE_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "additionalProperties": False,
    "description": "Configured guest memory in bytes, by VM state and autostart.",
    "properties": {
        "RNP": {"type": "integer", "description": "Running VMs that do not autostart."},
        "PRD": {"type": "integer", "description": "Stopped VMs that autostart (reserved for them)."},
        "RPRD": {"type": "integer", "description": "Running VMs that autostart."},
    },
}


def requested_bytes(vm: Mapping[str, Any]) -> int:
    """Memory a VM needs to start: its balloon minimum, else its size (MiB in the record)."""
    return int(vm.get("min_memory") or vm["memory"]) * MiB


def ungrown_bytes(memory_mib: int, rss: int) -> int:
    """Memory a running guest may still take: its configured size minus what its QEMU holds now."""
    return max(0, memory_mib * MiB - rss)


def available_bytes(mem_available: int, ungrown: Iterable[int], overcommit: bool) -> int:
    """Memory for a new guest from MemAvailable and what each running guest may still take."""
    # There is no ZFS ARC here (upstream adds its shrinkable part): page cache is already in MemAvailable.
    free = int(mem_available * HOST_SHARE)
    if overcommit:
        return free
    return max(0, free - sum(ungrown))


def vmemory_in_use(vms: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Configured memory in bytes: running (RNP, RPRD by autostart) and stopped autostart VMs (PRD)."""
    out = {"RNP": 0, "PRD": 0, "RPRD": 0}
    for vm in vms:
        size = int(vm["memory"]) * MiB
        if VMState(vm["status"]["state"]).active:
            out["RPRD" if vm["autostart"] else "RNP"] += size
        elif vm["autostart"]:
            out["PRD"] += size
    return out


def _rss(pid: int | None) -> int:
    if pid is None:
        return 0
    try:
        return int(psutil.Process(pid).memory_info().rss)
    except (psutil.NoSuchProcess, psutil.AccessDenied):
        return 0


def _sample_host(running: list[tuple[int, int | None]]) -> tuple[int, list[int]]:
    """MemAvailable and, per (memory MiB, QEMU pid) of a running guest, what it may still take."""
    return int(psutil.virtual_memory().available), [ungrown_bytes(mib, _rss(pid)) for mib, pid in running]


class VMQuery(Protocol):
    """What the vm service's mixins read VMs with (VMRecords provides it)."""

    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None) -> Any: ...

    async def active_guests(self) -> list[tuple[int, int | None]]: ...


async def _available(service: VMQuery, overcommit: bool) -> int:
    running = await service.active_guests()
    mem_available, ungrown = await asyncio.to_thread(_sample_host, running)
    return available_bytes(mem_available, ungrown, overcommit)


async def get_available_memory(vms: VMQuery, overcommit: bool = False) -> int:
    """Bytes a new guest can get: 90% of MemAvailable, less what running guests may still grow into."""
    return await _available(vms, overcommit)


async def get_vmemory_in_use(vms: VMQuery) -> dict[str, int]:
    """Configured memory of running VMs (RNP, RPRD) and of stopped autostart VMs (PRD), in bytes."""
    return vmemory_in_use(await vms.query())


async def check_memory(vms: VMQuery, vm: Mapping[str, Any], overcommit: bool) -> None:
    """Raise ENOMEM when the host cannot guarantee the VM's memory (vm.start without overcommit)."""
    if requested_bytes(vm) > await _available(vms, overcommit):
        raise CallError(f"Cannot guarantee memory for guest {vm['name']}", errno.ENOMEM)
