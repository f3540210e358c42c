"""Host PCI devices from sysfs: existence, IOMMU group, driver, and whether one may be passed through."""
from __future__ import annotations

import os
import re
from dataclasses import dataclass

SYS_PCI = "/sys/bus/pci/devices"
IOMMU_GROUPS = "/sys/kernel/iommu_groups"
_NODEDEV = re.compile(r"^pci_([0-9a-f]{4})_([0-9a-f]{2})_([0-9a-f]{2})_([0-7])$")
_ADDRESS = re.compile(r"^[0-9a-f]{4}:[0-9a-f]{2}:[0-9a-f]{2}\.[0-7]$")
# PCI class 0x06: host, ISA and PCI bridges. Handing one to a guest takes the devices behind it from the host.
_BRIDGE_CLASS = "0x06"


def canonical_address(pptdev: str) -> str | None:
    """"0000:01:00.0" for either "0000:01:00.0" or libvirt's node device name "pci_0000_01_00_0"."""
    value = pptdev.strip().lower()
    match = _NODEDEV.match(value)
    if match:
        return f"{match[1]}:{match[2]}:{match[3]}.{match[4]}"
    return value if _ADDRESS.match(value) else None


@dataclass(frozen=True)
class PciDevice:
    """One host PCI device as sysfs shows it."""

    address: str
    vendor_id: str
    product_id: str
    class_code: str
    driver: str | None
    iommu_group: int | None
    # Host network interfaces and block devices this device provides.
    host_use: tuple[str, ...]

    @property
    def critical(self) -> bool:
        """A bridge: the host needs it."""
        return self.class_code.startswith(_BRIDGE_CLASS)

    @property
    def description(self) -> str:
        return f"PCI {self.vendor_id}:{self.product_id} (class {self.class_code})"


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _link_name(path: str) -> str | None:
    try:
        return os.path.basename(os.readlink(path))
    except OSError:
        return None


def _host_use(device_dir: str) -> tuple[str, ...]:
    used = []
    for sub in ("net", "block"):
        try:
            used.extend(sorted(os.listdir(os.path.join(device_dir, sub))))
        except OSError:
            pass
    return tuple(used)


def pci_device(address: str, root: str = SYS_PCI) -> PciDevice | None:
    """The device at a canonical address, or None when the host has none there."""
    path = os.path.join(root, address)
    if not os.path.isdir(path):
        return None
    group = _link_name(os.path.join(path, "iommu_group"))
    return PciDevice(
        address=address,
        vendor_id=_read(os.path.join(path, "vendor")) or "",
        product_id=_read(os.path.join(path, "device")) or "",
        class_code=_read(os.path.join(path, "class")) or "",
        driver=_link_name(os.path.join(path, "driver")),
        iommu_group=int(group) if group and group.isdigit() else None,
        host_use=_host_use(path),
    )


def pci_devices(root: str = SYS_PCI) -> list[PciDevice]:
    """Every host PCI device, by address."""
    try:
        names = sorted(os.listdir(root))
    except OSError:
        return []
    return [d for d in (pci_device(n, root) for n in names) if d is not None]


def iommu_enabled(groups: str = IOMMU_GROUPS) -> bool:
    """Whether the kernel has IOMMU groups (needed for VFIO passthrough)."""
    try:
        return bool(os.listdir(groups))
    except OSError:
        return False


def passthrough_problem(device: PciDevice, iommu: bool, group: list[PciDevice]) -> str | None:
    """Why a device cannot be handed to a guest now (None: it can)."""
    if not iommu:
        return "IOMMU is not enabled on this host"
    if device.iommu_group is None:
        return "the device is in no IOMMU group"
    critical = [d.address for d in group if d.critical]
    if critical:
        return f"its IOMMU group holds devices critical for the host ({', '.join(critical)})"
    in_use = [name for d in group for name in d.host_use]
    if in_use:
        # managed='yes' would unbind the host driver and take these away from the host.
        return f"the host is using it ({', '.join(in_use)})"
    return None


def iommu_group(device: PciDevice, devices: list[PciDevice]) -> list[PciDevice]:
    """The devices sharing the device's IOMMU group (itself included); VFIO hands out whole groups."""
    if device.iommu_group is None:
        return [device]
    return [d for d in devices if d.iommu_group == device.iommu_group]
