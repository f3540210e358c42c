"""Typed records of a VM and of the host facts its domain XML depends on."""
from __future__ import annotations

import enum
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import Any, Self, get_type_hints


class ClockTime(enum.StrEnum):
    """Whether the guest's RTC runs in host local time or in UTC."""

    LOCAL = "LOCAL"
    UTC = "UTC"


class Bootloader(enum.StrEnum):
    """Firmware: UEFI (OVMF) or legacy BIOS (SeaBIOS, called UEFI_CSM by the API)."""

    UEFI = "UEFI"
    UEFI_CSM = "UEFI_CSM"


class CpuMode(enum.StrEnum):
    """How the guest CPU is modelled; the lower-cased value is libvirt's `<cpu mode>`."""

    CUSTOM = "CUSTOM"
    HOST_MODEL = "HOST-MODEL"
    HOST_PASSTHROUGH = "HOST-PASSTHROUGH"


class VMState(enum.StrEnum):
    """What vm.query's status.state says of a VM (libvirt's finer domain states map onto these)."""

    RUNNING = "RUNNING"
    SUSPENDED = "SUSPENDED"
    STOPPED = "STOPPED"
    ERROR = "ERROR"

    @property
    def active(self) -> bool:
        """Whether the guest exists (running or paused): it holds memory and devices."""
        return self in (VMState.RUNNING, VMState.SUSPENDED)


class DomainType(enum.StrEnum):
    """libvirt `<domain type>`: hardware acceleration (kvm) or pure emulation (qemu, TCG)."""

    KVM = "kvm"
    QEMU = "qemu"


def domain_name(vm_id: int, name: str) -> str:
    """The libvirt domain name of a VM, `{id}_{name}`, so `virsh` users can tell which record it is."""
    return f"{vm_id}_{name}"


def device_order(device: Mapping[str, Any]) -> tuple[bool, int, int]:
    """The order of a VM's devices (and of its boot devices): `order`, unset last, then id."""
    return device.get("order") is None, device.get("order") or 0, device.get("id") or 0


@dataclass(frozen=True, slots=True)
class VMRecord:
    """One row of `vm_vm`, defaults as in the TrueNAS VM API; memory sizes are in MiB."""

    id: int
    name: str
    memory: int
    description: str = ""
    vcpus: int = 1
    cores: int = 1
    threads: int = 1
    min_memory: int | None = None
    autostart: bool = True
    time: ClockTime = ClockTime.LOCAL
    bootloader: Bootloader = Bootloader.UEFI
    bootloader_ovmf: str = "OVMF_CODE.fd"
    cpu_mode: CpuMode = CpuMode.CUSTOM
    cpu_model: str | None = None
    cpuset: str | None = None
    nodeset: str | None = None
    enable_cpu_topology_extension: bool = False
    pin_vcpus: bool = False
    hyperv_enlightenments: bool = False
    shutdown_timeout: int = 90
    hide_from_msr: bool = False
    ensure_display_device: bool = True
    suspend_on_snapshot: bool = False
    trusted_platform_module: bool = False
    enable_secure_boot: bool = False
    arch_type: str | None = None
    machine_type: str | None = None
    uuid: str | None = None
    command_line_args: str = ""
    template: bool = False

    @classmethod
    def from_row(cls, row: Mapping[str, Any]) -> Self:
        """Build a record from a database row or API entry; unknown keys (status, devices) are ignored."""
        values = {name: row[name] for name in _FIELD_NAMES if name in row}
        for name, convert in _CONVERTERS.items():
            if name in values:
                values[name] = convert(values[name])
        return cls(**values)

    @property
    def domain_name(self) -> str:
        """The libvirt domain name of this VM."""
        return domain_name(self.id, self.name)

    @property
    def total_vcpus(self) -> int:
        """Number of vCPUs the guest sees: sockets x cores x threads."""
        return self.vcpus * self.cores * self.threads


@dataclass(frozen=True, slots=True)
class DomainContext:
    """Host-dependent inputs of the domain XML, resolved by the caller before building it."""

    domain_type: DomainType
    # Per-VM UEFI variable store; libvirt copies `nvram_template` there when the file is missing.
    nvram_path: str
    nvram_template: str | None = None
    emulator: str = "/usr/bin/qemu-system-x86_64"
    ovmf_dir: str = "/usr/share/OVMF"
    # Used instead of `bootloader_ovmf` when secure boot is on and that file cannot enforce it.
    secure_boot_code: str = "OVMF_CODE_4M.secboot.fd"
    # When set, the serial console is also logged (by virtlogd) to this file.
    serial_log_path: str | None = None
    # The UUID of the daemon instance defining the domain, written into its <metadata>: start-up
    # reconciliation recognises its own domains by it (several daemons may share one libvirtd).
    instance: str | None = None


_FIELD_NAMES = tuple(f.name for f in fields(VMRecord))
# SQLite hands booleans back as 0/1 and choices as plain strings.
_CONVERTERS: dict[str, Any] = {
    name: kind
    for name, kind in get_type_hints(VMRecord).items()
    if kind in (bool, ClockTime, Bootloader, CpuMode)
}


def parse_cpuset(spec: str) -> list[int]:
    """Expand a libvirt/TrueNAS CPU list such as "0-3,8" into [0, 1, 2, 3, 8], in the order written."""
    cpus: list[int] = []
    for part in spec.split(","):
        first, sep, last = part.strip().partition("-")
        if not sep:
            cpus.append(int(first))
            continue
        low, high = int(first), int(last)
        if low >= high:
            raise ValueError(f"invalid CPU range {part.strip()!r}")
        cpus.extend(range(low, high + 1))
    return cpus
