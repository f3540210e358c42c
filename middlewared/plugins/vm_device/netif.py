"""Host networking facts for NICs and displays: interfaces, bridges, libvirt networks, addresses."""
from __future__ import annotations

import ipaddress
import os
import socket
from dataclasses import dataclass, field

import libvirt
import psutil

from middlewared.plugins.vm_device.model import NicKind

SYS_NET = "/sys/class/net"
PROC_ROUTE = "/proc/net/route"
# Interfaces libvirt and QEMU create per guest (tap devices, macvtaps): never a place to attach a NIC.
_GUEST_PREFIXES = ("vnet", "macvtap", "tap", "veth")


@dataclass(frozen=True)
class Networks:
    """Where NICs can attach: host interfaces (bridges among them) and libvirt networks."""

    interfaces: dict[str, NicKind] = field(default_factory=dict)
    # libvirt network name -> whether it is active.
    networks: dict[str, bool] = field(default_factory=dict)
    default_interface: str | None = None

    def kind(self, name: str) -> NicKind | None:
        """What a name is; host interfaces win over libvirt networks of the same name."""
        if name in self.interfaces:
            return self.interfaces[name]
        if name in self.networks:
            return NicKind.NETWORK
        return None

    def inactive(self, name: str) -> bool:
        """Whether name is a libvirt network that is not running (a guest cannot start attached to it)."""
        return self.kind(name) is NicKind.NETWORK and not self.networks[name]

    def kinds(self) -> dict[str, NicKind]:
        """Every attachable name with its kind."""
        out = {name: NicKind.NETWORK for name in self.networks}
        out.update(self.interfaces)
        return out


def host_interfaces(sys_net: str = SYS_NET) -> dict[str, NicKind]:
    """Host network interfaces a NIC may use: bridges (they have a `bridge` sysfs dir) and the others."""
    out: dict[str, NicKind] = {}
    try:
        names = sorted(os.listdir(sys_net))
    except OSError:
        return out
    for name in names:
        if name == "lo" or name.startswith(_GUEST_PREFIXES):
            continue
        bridge = os.path.isdir(os.path.join(sys_net, name, "bridge"))
        out[name] = NicKind.BRIDGE if bridge else NicKind.DIRECT
    return out


def default_route_interface(route_file: str = PROC_ROUTE) -> str | None:
    """The interface of the IPv4 default route, from the kernel's routing table."""
    try:
        with open(route_file) as f:
            lines = f.read().splitlines()[1:]
    except OSError:
        return None
    for line in lines:
        fields = line.split()
        if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
            return fields[0]
    return None


def libvirt_networks(conn: libvirt.virConnect) -> dict[str, bool]:
    """libvirt network names and whether each is active (blocking)."""
    return {net.name(): bool(net.isActive()) for net in conn.listAllNetworks()}


def bind_addresses() -> list[str]:
    """Addresses a display may listen on: the host's, plus the wildcards (as upstream)."""
    out = {"0.0.0.0", "::"}
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                # Link-local IPv6 addresses carry a scope (%eth0) QEMU cannot listen on without it.
                address = a.address.split("%")[0]
                if not ipaddress.ip_address(address).is_link_local:
                    out.add(address)
    return sorted(out, key=lambda a: (":" in a, a))


def listening_ports() -> set[int]:
    """TCP ports some process listens on."""
    return {c.laddr.port for c in psutil.net_connections("tcp") if c.status == psutil.CONN_LISTEN and c.laddr}
