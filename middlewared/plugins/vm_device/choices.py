"""vm.device.*_choices: what clients may pick for device attributes, from the host and libvirt."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from middlewared.plugins.vm_device import pool
from middlewared.plugins.vm_device.pcidev import iommu_group, passthrough_problem
from middlewared.plugins.vm_device.storage import IoType
from middlewared.plugins.vm_device.usb import CONTROLLER_TYPES, Usb

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.manager import DeviceManager

ROLES = ("VM_DEVICE_READ", "READONLY_ADMIN")


async def bind_choices(manager: "DeviceManager") -> dict[str, str]:
    """Addresses a DISPLAY may listen on: the host's addresses, 0.0.0.0 and ::."""
    return {a: a for a in await (await manager.host()).bind_addresses()}


async def disk_choices(manager: "DeviceManager") -> dict[str, str]:
    """Volumes of the active storage pools that no DISK device uses."""
    host = await manager.host()
    await host.ensure_pool()
    used = {device.volume() for r in (await manager.vms.stored_vms()).values() for d in r["devices"]
            if (device := manager.types.typed(d["attributes"])) is not None}
    volumes = await manager.hv.run(pool.all_volumes)
    return {v.path: v.zvol_name for v in volumes if v.zvol_name not in used}


async def pool_choices(manager: "DeviceManager") -> dict[str, str]:
    """Active storage pools a new DISK volume may be created in (zvol_name "<pool>/<volume>")."""
    host = await manager.host()
    await host.ensure_pool()
    names = [str(p.name()) for p in await manager.hv.run(pool.active_pools)]
    ordered = [host.pool] + [n for n in names if n != host.pool]
    return {n: n for n in ordered if n in names}


async def nic_attach_choices(manager: "DeviceManager") -> dict[str, str]:
    """Host bridges, other host interfaces and active libvirt networks a NIC may attach to."""
    networks = await (await manager.host()).networks()
    return {name: name for name in sorted(networks.kinds()) if not networks.inactive(name)}


async def passthrough_device_choices(manager: "DeviceManager") -> dict[str, dict[str, Any]]:
    """Host PCI devices with their IOMMU group, driver and whether they can be passed through."""
    devices, iommu = await (await manager.host()).pci_devices()
    out = {}
    for d in devices:
        problem = "critical for the host (a PCI bridge)" if d.critical else \
            passthrough_problem(d, iommu, iommu_group(d, devices))
        out[d.address] = {
            "description": d.description, "vendor_id": d.vendor_id, "product_id": d.product_id,
            "class": d.class_code, "iommu_group": d.iommu_group, "drivers": [d.driver] if d.driver else [],
            "critical": d.critical, "available": problem is None, "error": problem}
    return out


async def usb_passthrough_choices(manager: "DeviceManager") -> dict[str, dict[str, Any]]:
    """Host USB devices (libvirt node devices), and whether a running VM already uses each."""
    host = await manager.host()
    out = {}
    for d in await host.usb_devices():
        used = any(isinstance(other, Usb) and other.uses(d) for other in host.running_elsewhere)
        out[d.name] = {
            "capability": {"vendor": d.vendor, "vendor_id": d.vendor_id, "product": d.product,
                           "product_id": d.product_id, "bus": d.bus, "device": d.device},
            "available": not used, "error": "in use by a running VM" if used else None}
    return out


async def usb_controller_choices(manager: "DeviceManager") -> dict[str, str]:
    """Models of the guest USB controller a USB device is plugged into."""
    return {c: c for c in CONTROLLER_TYPES}


async def iotype_choices(manager: "DeviceManager") -> dict[str, str]:
    """I/O backends of DISK and RAW devices."""
    return {t.value: t.value for t in IoType}
