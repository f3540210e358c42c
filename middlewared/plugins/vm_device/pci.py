"""PCI: a host PCI device handed to the guest (VFIO; libvirt detaches it from its host driver at start)."""
from __future__ import annotations

import errno
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lxml import etree

from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.pcidev import canonical_address, iommu_group, passthrough_problem
from middlewared.plugins.vm_device.xml import pci_source_address

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check

PPTDEV_PATTERN = (r"^([0-9a-fA-F]{4}:[0-9a-fA-F]{2}:[0-9a-fA-F]{2}\.[0-7]"
                  r"|pci_[0-9a-fA-F]{4}_[0-9a-fA-F]{2}_[0-9a-fA-F]{2}_[0-7])$")


@dataclass(frozen=True, kw_only=True)
class Pci(Device):
    """PCI passthrough."""

    pptdev: str

    dtype = "PCI"
    description = "A host PCI device passed through to the guest."
    required = ("pptdev",)
    properties = {
        "pptdev": {"type": "string", "pattern": PPTDEV_PATTERN,
                   "description": "Host PCI address, \"0000:01:00.0\" or \"pci_0000_01_00_0\" (stored as "
                                  "0000:01:00.0; see vm.device.passthrough_device_choices)."},
    }

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        address = canonical_address(a["pptdev"])
        assert address is not None  # the schema pattern admits only the two forms
        a["pptdev"] = address
        devices, _ = await check.host.pci_devices()
        device = next((d for d in devices if d.address == address), None)
        if device is None:
            check.error(p, "pptdev", f"Not a valid choice. The host has no PCI device {address}", errno.ENOENT)
        elif device.critical:
            check.error(p, "pptdev", "'PCI bridge' based PCI devices are critical for system function and cannot "
                                     "be used for PCI passthrough")
        if any(s.get("pptdev") == address for s in check.siblings("PCI")):
            check.error(p, "pptdev", f"PCI device {address} is already passed through to this VM", errno.EEXIST)
        return a

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        # managed='yes': libvirt binds the device to vfio-pci at start and gives it back to its driver after.
        hostdev = etree.Element("hostdev", mode="subsystem", type="pci", managed="yes")
        pci_source_address(hostdev, self.pptdev)
        return [hostdev]

    async def unavailable(self, host: "Host") -> list[str]:
        address = self.pptdev
        devices, iommu = await host.pci_devices()
        device = next((d for d in devices if d.address == address), None)
        if device is None:
            return [f"the host has no PCI device {address}"]
        problems = []
        problem = passthrough_problem(device, iommu, iommu_group(device, devices))
        if problem:
            problems.append(problem)
        if any(isinstance(other, Pci) and other.pptdev == address for other in host.running_elsewhere):
            problems.append("PCI device is already being used by another active VM")
        return problems

    def identity(self) -> str:
        return self.pptdev
