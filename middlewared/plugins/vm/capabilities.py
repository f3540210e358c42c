"""What libvirt says this host can run: capabilities, machine types, vCPU limits and CPU models.

Each fact is asked once per libvirt connection object (the Hypervisor) and kept: they do not change while
the daemon runs.
"""
from __future__ import annotations

import functools
import platform
import xml.etree.ElementTree as ET
from typing import Callable, TypeVar, cast

import libvirt

from middlewared.errors import CallError
from middlewared.plugins.vm.domain_xml import DEFAULT_MACHINE
from middlewared.plugins.vm.hypervisor import Hypervisor

T = TypeVar("T")


async def host_fact(hv: Hypervisor, name: str, fn: Callable[[libvirt.virConnect], T]) -> T:
    """fn(conn) run once per hypervisor and kept (only successful answers are)."""
    if name not in hv.facts:
        hv.facts[name] = await hv.run(fn)
    return cast(T, hv.facts[name])


def capabilities_xml(conn: libvirt.virConnect) -> str:
    """libvirt's capabilities XML."""
    return str(conn.getCapabilities())


def arch_machines(capabilities: str) -> dict[str, list[str]]:
    """Guest architecture -> machine types, from libvirt's capabilities XML."""
    out: dict[str, list[str]] = {}
    for arch in ET.fromstring(capabilities).iterfind("guest/arch"):
        name = arch.get("name")
        if name:
            machines = out.setdefault(name, [])
            machines.extend(m.text for m in arch.iterfind("machine") if m.text and m.text not in machines)
    return out


# Every vm.create and vm.update validates against this limit: parsing the capabilities XML each time cost
# more than the rest of the validation. The XML is one cached string, whose hash Python keeps.
@functools.lru_cache(maxsize=8)
def machine_max_cpus(capabilities: str, arch: str, machine: str = DEFAULT_MACHINE) -> int | None:
    """maxCpus of a machine type (by name or canonical name) for an architecture, if libvirt lists it."""
    for arch_el in ET.fromstring(capabilities).iterfind("guest/arch"):
        if arch_el.get("name") != arch:
            continue
        for m in arch_el.iter("machine"):
            if machine in (m.text, m.get("canonical")) and m.get("maxCpus"):
                return int(m.get("maxCpus", "0"))
    return None


def _legacy_max_vcpus(conn: libvirt.virConnect) -> int:
    return int(conn.getMaxVcpus(None))


async def max_vcpus(hv: Hypervisor) -> int:
    """Most vCPUs a guest may have: the default machine type's limit as libvirt reports it."""
    limit = machine_max_cpus(await host_fact(hv, "capabilities", capabilities_xml), platform.machine())
    if limit is None:
        limit = await host_fact(hv, "max_vcpus", _legacy_max_vcpus)
    return max(1, limit)


def _cpu_models(conn: libvirt.virConnect) -> frozenset[str]:
    return frozenset(str(m) for m in conn.getCPUModelNames(platform.machine()))


async def cpu_models(hv: Hypervisor) -> frozenset[str]:
    """The CPU models libvirt knows for the host architecture (empty when it cannot tell)."""
    try:
        return await host_fact(hv, "cpu_models", _cpu_models)
    except CallError:
        return frozenset()
