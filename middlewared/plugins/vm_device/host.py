"""Host facts for one request (validation, start checks, choices), each looked up once and only if asked."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import pwd
import xml.etree.ElementTree as ET
from typing import TYPE_CHECKING, Any, AsyncContextManager, Awaitable, Callable, Sequence, TypeVar, cast

from middlewared.config import StorageConfig
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.capabilities import capabilities_xml, host_fact
from middlewared.plugins.vm_device import netif, pcidev, pool
from middlewared.plugins.vm_device.model import HostSnapshot
from middlewared.plugins.vm_device.paths import QemuUser, real_roots
from middlewared.plugins.vm_device.pcidev import PciDevice
from middlewared.plugins.vm_device.usbdev import UsbDevice, usb_devices

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.base import Device
    from middlewared.plugins.vm_device.intents import Intents, Leftover

T = TypeVar("T")


def qemu_user(capabilities: str, domain_type: str) -> QemuUser | None:
    """The DAC user:group QEMU runs as, from libvirt's capabilities (`<baselabel>+uid:+gid</baselabel>`)."""
    root = ET.fromstring(capabilities)
    for secmodel in root.iterfind("host/secmodel"):
        if secmodel.findtext("model") != "dac":
            continue
        for label in secmodel.iterfind("baselabel"):
            if label.get("type") == domain_type and label.text:
                uid_s, _, gid_s = label.text.partition(":")
                uid, gid = int(uid_s.lstrip("+")), int(gid_s.lstrip("+"))
                try:
                    groups = frozenset(os.getgrouplist(pwd.getpwuid(uid).pw_name, gid))
                except KeyError:
                    groups = frozenset({gid})
                return QemuUser(uid, gid, groups)
    return None


class Host:
    """The host as one request sees it."""

    def __init__(self, hv: Hypervisor, storage: StorageConfig, domain_type: str,
                 running_elsewhere: Callable[[], Sequence["Device"]] = tuple,
                 intents: "Intents | None" = None,
                 foreign_ports: Callable[[], Awaitable[dict[int, str]]] | None = None) -> None:
        self.hv = hv
        self._foreign_ports = foreign_ports
        # Where volumes made outside a device plan (clone copies) record their intent; None: not recorded.
        self.intents = intents
        self.roots = real_roots(storage.roots)
        self.pool = storage.pool
        # A pool the daemon creates itself lives under the first root, so CDROM/RAW rules cover it too.
        self.pool_dir = os.path.join(self.roots[0], storage.pool)
        self.domain_type = domain_type
        self._running_elsewhere = running_elsewhere
        self._memo: dict[str, Any] = {}

    @functools.cached_property
    def running_elsewhere(self) -> list["Device"]:
        """The devices of other running VMs (PCI and USB devices cannot be shared), found when first asked."""
        return list(self._running_elsewhere())

    async def _once(self, key: str, fn: Callable[[], Awaitable[T]]) -> T:
        if key not in self._memo:
            self._memo[key] = await fn()
        return cast(T, self._memo[key])

    # -- storage ---------------------------------------------------------------------------------
    def making(self, leftover: "Leftover") -> AsyncContextManager[None]:
        """Around the step that makes leftover outside a device plan: its intent recorded (see intents.py)."""
        return self.intents.making(leftover) if self.intents is not None else contextlib.nullcontext()

    async def ensure_pool(self) -> None:
        """Create (dir pool under the first root), start and autostart the configured pool when needed."""
        await self._once("pool", lambda: self.hv.run(pool.ensure_pool, self.pool, self.pool_dir))

    async def volume(self, zvol_name: str) -> pool.Volume | None:
        """The volume "<pool>/<name>", or None."""
        pool_name, _, name = zvol_name.partition("/")
        if pool_name == self.pool:
            await self.ensure_pool()
        return await self.hv.run(pool.lookup_volume, pool_name, name)

    async def delete_volume(self, zvol_name: str) -> None:
        """Delete the volume "<pool>/<name>" (CallError when libvirt refuses)."""
        pool_name, _, name = zvol_name.partition("/")
        await self.hv.run(pool.delete_volume, pool_name, name)

    async def volume_at(self, path: str) -> pool.Volume | None:
        """The volume at a path, or None."""
        await self.ensure_pool()
        return await self.hv.run(pool.volume_at, path)

    async def pool_active(self, name: str) -> bool:
        """Whether a pool exists and is active."""
        if name == self.pool:
            await self.ensure_pool()
        found = await self.hv.run(pool.find_pool, name)
        return found is not None and bool(await self.hv.run(lambda conn: found.isActive()))

    async def qemu_user(self) -> QemuUser | None:
        """Who QEMU runs as (None: unknown, or root)."""
        caps = await host_fact(self.hv, "capabilities", capabilities_xml)
        return qemu_user(caps, self.domain_type)

    # -- networks and ports --------------------------------------------------------------------
    async def networks(self, fresh: bool = False) -> netif.Networks:
        """Host interfaces and the default-route interface, read now, and libvirt networks, kept from one request
        to the next until libvirt reports a change (Hypervisor.watched; fresh: read now)."""
        async def read() -> netif.Networks:
            interfaces, default = await asyncio.to_thread(
                lambda: (netif.host_interfaces(), netif.default_route_interface()))
            return netif.Networks(interfaces, await self.hv.watched("networks", netif.libvirt_networks, fresh),
                                  default)
        if fresh:
            self._memo.pop("networks", None)
        return await self._once("networks", read)

    async def bind_addresses(self) -> list[str]:
        """Addresses a display may listen on."""
        return await self._once("bind", lambda: asyncio.to_thread(netif.bind_addresses))

    async def listening_ports(self) -> set[int]:
        """TCP ports some process listens on."""
        return await self._once("listening", lambda: asyncio.to_thread(netif.listening_ports))

    async def foreign_display_ports(self) -> dict[int, str]:
        """Display ports of other daemons' domains on the libvirtd, stopped ones too: port -> domain."""
        if self._foreign_ports is None:
            return {}
        return await self._once("foreign_ports", self._foreign_ports)

    # -- passthrough ---------------------------------------------------------------------------
    async def pci_devices(self) -> tuple[list[PciDevice], bool]:
        """Host PCI devices and whether the IOMMU is on."""
        return await self._once("pci", lambda: asyncio.to_thread(
            lambda: (pcidev.pci_devices(), pcidev.iommu_enabled())))

    async def usb_devices(self, fresh: bool = False) -> list[UsbDevice]:
        """Host USB devices, kept from one request to the next until libvirt reports a device added or removed
        (Hypervisor.watched; fresh: read now)."""
        if fresh:
            self._memo.pop("usb", None)
        return await self._once("usb", lambda: self.hv.watched("node_devices", usb_devices, fresh))

    async def snapshot(self) -> HostSnapshot:
        """The host facts device XML depends on."""
        networks = await self.networks()
        usb = await self.usb_devices()
        return HostSnapshot(networks.kinds(), networks.default_interface, {d.name: d.address for d in usb})
