"""NIC: an E1000 or VIRTIO network card on a host bridge, another host interface (macvtap) or a libvirt
network; its MAC is chosen once, at creation."""
from __future__ import annotations

import enum
import errno
import re
import secrets
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar, Hashable, Mapping

from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm_device.base import Device
from middlewared.plugins.vm_device.model import NicKind, Proposal, Slot
from middlewared.plugins.vm_device.xml import sub

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.netif import Networks
    from middlewared.plugins.vm_device.planning import Check

# TrueNAS's prefix. 00:a0:98 is a universally administered OUI (NetApp's), not a locally administered one;
# it is kept because TrueNAS clients expect it. Its first octet has the multicast bit clear: unicast.
MAC_PREFIX = "00:a0:98"
MAC_PATTERN = r"^([0-9A-Fa-f]{2}[:-]?){5}([0-9A-Fa-f]{2})$"
_HEX = re.compile(r"[0-9a-f]{2}")


class NicModel(enum.StrEnum):
    """The card the guest sees; the lower-cased value is libvirt's `<model type>`."""

    E1000 = "E1000"
    VIRTIO = "VIRTIO"


def format_mac(suffix: bytes) -> str:
    """The MAC address MAC_PREFIX followed by three octets."""
    if len(suffix) != 3:
        raise ValueError("a MAC suffix has three octets")
    return ":".join([MAC_PREFIX, *(f"{b:02x}" for b in suffix)])


def random_mac() -> str:
    """A random MAC address in MAC_PREFIX."""
    return format_mac(secrets.token_bytes(3))


def canonical_mac(mac: str) -> str:
    """"00:a0:98:12:34:56" for any accepted spelling (upper case, dashes, no separators)."""
    return ":".join(_HEX.findall(mac.lower().replace(":", "").replace("-", "")))


def mac_claim(mac: str) -> tuple[str, str]:
    """What a NIC with this (canonical) MAC holds (Device.claims)."""
    return ("mac", mac)


def mac_problem(mac: str) -> str | None:
    """Why a (canonical) MAC cannot be a NIC's address."""
    first = int(mac[:2], 16)
    if first & 1:
        return "MAC address must be unicast (the lowest bit of the first octet must be 0)"
    if mac == "00:00:00:00:00:00":
        return "MAC address must not be all zeros"
    return None


@dataclass(frozen=True, kw_only=True)
class Nic(Device):
    """A network card."""

    type: NicModel
    nic_attach: str | None
    mac: str | None
    trust_guest_rx_filters: bool

    dtype = "NIC"
    description = "A network card attached to a host bridge, another host interface (macvtap) or a libvirt network."
    properties = {
        "type": {"type": "string", "enum": [m.value for m in NicModel], "default": "E1000",
                 "description": "Card model: E1000 (Intel, any guest) or VIRTIO (paravirtual)."},
        "nic_attach": {"type": ["string", "null"], "default": None, "minLength": 1,
                       "description": "Host bridge, other host interface (macvtap, mode bridge) or libvirt "
                                      "network (see vm.device.nic_attach_choices); null: the interface of the "
                                      "IPv4 default route."},
        "mac": {"type": ["string", "null"], "default": None, "pattern": MAC_PATTERN,
                "description": "MAC address; generated (00:a0:98:xx:xx:xx) when null and then kept."},
        "trust_guest_rx_filters": {"type": "boolean", "default": False,
                                   "description": "Let the guest change its MAC and multicast filters "
                                                  "(VIRTIO on a macvtap interface only)."},
    }
    # Chosen anew for a clone: two guests must not share a MAC.
    regenerated: ClassVar[tuple[str, ...]] = ("mac",)

    @classmethod
    def claims(cls, attributes: Mapping[str, Any]) -> frozenset[Hashable]:
        mac = attributes.get("mac")
        return frozenset({mac_claim(canonical_mac(mac))}) if mac else frozenset()

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        networks = await _networks_for(check.host, a["nic_attach"])
        name = a["nic_attach"] or networks.default_interface
        kind = networks.kind(name) if name else None
        if a["nic_attach"] and kind is None:
            check.error(p, "nic_attach", "Not a valid choice. No host interface or libvirt network has this name "
                                         "(see vm.device.nic_attach_choices)", errno.ENOENT)
        elif kind is None:
            check.error(p, "nic_attach", "The host has no IPv4 default route to attach to; name an interface",
                        errno.ENOENT)
        elif name and networks.inactive(name) and (p.old is None or p.old.get("nic_attach") != name):
            # Only a new choice: a stored NIC whose network went down later stays editable (vm.start says why).
            check.error(p, "nic_attach", f"libvirt network {name} is not active (start it with `virsh net-start "
                                         f"{name}`, or see vm.device.nic_attach_choices)", errno.ENODEV)
        if a["trust_guest_rx_filters"]:
            if a["type"] != NicModel.VIRTIO:
                check.error(p, "trust_guest_rx_filters", 'This can only be set when "type" of NIC device is '
                                                         '"VIRTIO"')
            elif kind not in (None, NicKind.DIRECT):
                check.error(p, "trust_guest_rx_filters", "This can only be set when \"nic_attach\" is a host "
                                                         "interface other than a bridge (macvtap)")
        a["mac"] = cls._mac(p, check)
        return a

    @staticmethod
    def _mac(p: Proposal, check: "Check") -> str | None:
        given = p.attributes["mac"]
        if given is None and p.old is not None and p.old.get("mac"):
            # Never regenerated: the guest's network configuration may depend on it.
            return str(p.old["mac"])
        if given is None:
            while check.held(mac_claim(mac := random_mac())):
                pass
            return mac
        mac = canonical_mac(given)
        problem = mac_problem(mac)
        if problem:
            check.error(p, "mac", problem)
        elif check.held(mac_claim(mac)):
            check.error(p, "mac", f"MAC address {mac} is already used by another NIC", errno.EEXIST)
        return mac

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        name = self.nic_attach or slot.host.default_interface
        if name is None:
            # Never `dev=""`: libvirt would accept it and QEMU fail at start with a cryptic message.
            raise CallError("A NIC without nic_attach needs the host's IPv4 default route interface, and the "
                            "host has none", errno.ENODEV)
        kind = slot.host.nic_kind(name)
        interface = etree.Element("interface", type=kind.value)
        if kind is NicKind.BRIDGE:
            sub(interface, "source", bridge=name)
        elif kind is NicKind.NETWORK:
            sub(interface, "source", network=name)
        else:
            interface.set("trustGuestRxFilters", "yes" if self.trust_guest_rx_filters else "no")
            # mode bridge: guests on the same interface reach each other, and the world, through it.
            sub(interface, "source", dev=name, mode="bridge")
        sub(interface, "mac", address=str(self.mac))
        sub(interface, "model", type=self.type.lower())
        return [interface]

    async def unavailable(self, host: "Host") -> list[str]:
        networks = await _networks_for(host, self.nic_attach)
        name = self.nic_attach or networks.default_interface
        if name is None:
            return ["the host has no IPv4 default route interface"]
        kind = networks.kind(name)
        if kind is None:
            return [f"{name} is neither a host interface nor a libvirt network"]
        if kind is NicKind.NETWORK and not networks.networks[name]:
            return [f"libvirt network {name} is not active"]
        return []

    def identity(self) -> str:
        return self.nic_attach or "default route interface"


async def _networks_for(host: "Host", name: str | None) -> "Networks":
    """The host's networks, read again before a refusal of `name` (absent or an inactive libvirt network) that
    libvirt's kept list gives: an event reporting a change to it may still be on its way."""
    networks = await host.networks()
    if name and (networks.kind(name) is None or networks.inactive(name)):
        networks = await host.networks(fresh=True)
    return networks
