"""vm.device.*_choices: what clients may pick for device attributes, from the host and libvirt."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from middlewared.plugins.vm_device import pool
from middlewared.plugins.vm_device.pcidev import iommu_group, passthrough_problem
from middlewared.plugins.vm_device.schemas import PCI_DETAILS, USB_DETAILS, details_map, string_map
from middlewared.plugins.vm_device.storage import IoType
from middlewared.plugins.vm_device.usb import CONTROLLER_TYPES, Usb
from middlewared.service import api_method

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.manager import DeviceManager

ROLES = ("VM_DEVICE_READ", "READONLY_ADMIN")


class ChoicesHost(Protocol):
    """What the choices need of the service they are part of."""

    @property
    def manager(self) -> "DeviceManager": ...


class DeviceChoicesMixin:
    """The choices methods of vm.device."""

    @api_method(result=string_map("Address -> address."), roles=ROLES)
    async def bind_choices(self: ChoicesHost) -> dict[str, str]:
        """Addresses a DISPLAY may listen on: the host's addresses, 0.0.0.0 and ::."""
        return {a: a for a in await (await self.manager.host()).bind_addresses()}

    @api_method(result=string_map("Volume path -> \"<pool>/<volume>\"."), roles=ROLES)
    async def disk_choices(self: ChoicesHost) -> dict[str, str]:
        """Volumes of the active storage pools that no DISK device uses."""
        host = await self.manager.host()
        await host.ensure_pool()
        used = {device.volume() for r in (await self.manager.vms.stored_vms()).values() for d in r["devices"]
                if (device := self.manager.types.typed(d["attributes"])) is not None}
        volumes = await self.manager.hv.run(pool.all_volumes)
        return {v.path: v.zvol_name for v in volumes if v.zvol_name not in used}

    @api_method(result=string_map("Pool name -> pool name (the configured pool first)."), roles=ROLES)
    async def pool_choices(self: ChoicesHost) -> dict[str, str]:
        """Active storage pools a new DISK volume may be created in (zvol_name "<pool>/<volume>")."""
        host = await self.manager.host()
        await host.ensure_pool()
        names = [str(p.name()) for p in await self.manager.hv.run(pool.active_pools)]
        ordered = [host.pool] + [n for n in names if n != host.pool]
        return {n: n for n in ordered if n in names}

    @api_method(result=string_map("Name -> name."), roles=ROLES)
    async def nic_attach_choices(self: ChoicesHost) -> dict[str, str]:
        """Host bridges, other host interfaces and active libvirt networks a NIC may attach to."""
        networks = await (await self.manager.host()).networks()
        return {name: name for name in sorted(networks.kinds()) if not networks.inactive(name)}

    @api_method(result=details_map("PCI address -> details.", PCI_DETAILS), roles=ROLES)
    async def passthrough_device_choices(self: ChoicesHost) -> dict[str, dict[str, Any]]:
        """Host PCI devices with their IOMMU group, driver and whether they can be passed through."""
        devices, iommu = await (await self.manager.host()).pci_devices()
        out = {}
        for d in devices:
            problem = "critical for the host (a PCI bridge)" if d.critical else \
                passthrough_problem(d, iommu, iommu_group(d, devices))
            out[d.address] = {
                "description": d.description, "vendor_id": d.vendor_id, "product_id": d.product_id,
                "class": d.class_code, "iommu_group": d.iommu_group, "drivers": [d.driver] if d.driver else [],
                "critical": d.critical, "available": problem is None, "error": problem}
        return out

    @api_method(result=details_map("Node device name -> details.", USB_DETAILS), roles=ROLES)
    async def usb_passthrough_choices(self: ChoicesHost) -> dict[str, dict[str, Any]]:
        """Host USB devices (libvirt node devices), and whether a running VM already uses each."""
        host = await self.manager.host()
        out = {}
        for d in await host.usb_devices():
            used = any(isinstance(other, Usb) and other.uses(d) for other in host.running_elsewhere)
            out[d.name] = {
                "capability": {"vendor": d.vendor, "vendor_id": d.vendor_id, "product": d.product,
                               "product_id": d.product_id, "bus": d.bus, "device": d.device},
                "available": not used, "error": "in use by a running VM" if used else None}
        return out

    @api_method(result=string_map("Model -> model."), roles=ROLES)
    async def usb_controller_choices(self: ChoicesHost) -> dict[str, str]:
        """Models of the guest USB controller a USB device is plugged into."""
        return {c: c for c in CONTROLLER_TYPES}

    @api_method(result=string_map("I/O type -> I/O type."), roles=ROLES)
    async def iotype_choices(self: ChoicesHost) -> dict[str, str]:
        """I/O backends of DISK and RAW devices."""
        return {t.value: t.value for t in IoType}
