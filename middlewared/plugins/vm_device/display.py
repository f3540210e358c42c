"""DISPLAY: a SPICE or VNC server for the guest screen, on ports chosen once from 5900 up."""
from __future__ import annotations

import enum
import errno
from dataclasses import dataclass
from collections.abc import Container
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Hashable, Mapping

from lxml import etree

from middlewared.plugins.vm.schemas import RESOLUTIONS
from middlewared.plugins.vm_device.base import Device
from middlewared.middleware import SECRET
from middlewared.plugins.vm_device.model import Proposal, Slot
from middlewared.plugins.vm_device.xml import sub

if TYPE_CHECKING:
    from middlewared.plugins.vm_device.host import Host
    from middlewared.plugins.vm_device.planning import Check

PORT_KEYS = ("port", "web_port")
FIRST_DISPLAY_PORT = 5900
LAST_PORT = 65535
# Never offered to a display: TrueNAS middleware's internal port (callers add this daemon's own port).
RESERVED_PORTS = frozenset({6000})
# VNC's authentication (DES challenge) uses at most 8 password characters; libvirt refuses longer ones.
VNC_PASSWORD_MAX = 8


class DisplayType(enum.StrEnum):
    """The remote display protocol; the lower-cased value is libvirt's `<graphics type>`."""

    SPICE = "SPICE"
    VNC = "VNC"


def _port(description: str) -> dict[str, Any]:
    return {"type": ["integer", "null"], "default": None, "minimum": 1, "maximum": LAST_PORT,
            "description": description}


def display_ports(attributes: Mapping[str, Any]) -> set[int]:
    """The ports a display device holds."""
    return {attributes[k] for k in PORT_KEYS if attributes.get(k) is not None}


def port_claim(port: int) -> tuple[str, int]:
    """What a display on this port holds (Device.claims)."""
    return ("display port", port)


class Busy(Container[int]):
    """Ports held by a display (`held` looks a port's claim up) or in `also`."""

    def __init__(self, held: Callable[[Hashable], bool], also: Container[int]) -> None:
        self._held, self._also = held, also

    def __contains__(self, port: object) -> bool:
        return port in self._also or (isinstance(port, int) and self._held(port_claim(port)))


def pick_ports(used: Container[int], count: int = 2, first: int = FIRST_DISPLAY_PORT,
               last: int = LAST_PORT) -> list[int]:
    """The lowest `count` ports from `first` to `last` not in `used` (fewer if the range runs out)."""
    out: list[int] = []
    for port in range(first, last + 1):
        if port not in used:
            out.append(port)
            if len(out) == count:
                break
    return out


@dataclass(frozen=True, kw_only=True)
class Display(Device):
    """A remote display (with the VM's video card and tablet when it is the first one)."""

    type: DisplayType
    resolution: str
    port: int | None
    web_port: int | None
    bind: str
    wait: bool
    password: str | None
    web: bool

    dtype = "DISPLAY"
    description = "A SPICE or VNC display server."
    properties = {
        "type": {"type": "string", "enum": [t.value for t in DisplayType], "default": "SPICE",
                 "description": "Protocol: SPICE, or VNC."},
        "resolution": {"type": "string", "enum": RESOLUTIONS, "default": "1024x768",
                       "description": "Screen resolution of the video card."},
        "port": _port("TCP port of the display server; chosen from 5900 up when null."),
        "web_port": _port("Port reserved for the web client; chosen from 5900 up when null."),
        "bind": {"type": "string", "default": "127.0.0.1",
                 "description": "Address the server listens on (see vm.device.bind_choices)."},
        "wait": {"type": "boolean", "default": False, "description": "Kept for compatibility (unused, as upstream)."},
        "password": {"type": ["string", "null"], "default": None,
                     "description": "Password clients must give (none when null or empty); readers see it "
                                    "masked, and the mask sent back keeps it."},
        "web": {"type": "boolean", "default": True, "description": "Offer the web client served by the daemon (spice-html5 for SPICE, "
                                                                 "noVNC for VNC)."},
    }
    # Ports are unique across VMs: a clone's display gets its own.
    regenerated: ClassVar[tuple[str, ...]] = PORT_KEYS
    # The tablet the first display brings is a USB device.
    needs_usb: ClassVar[bool] = True

    @classmethod
    def claims(cls, attributes: Mapping[str, Any]) -> frozenset[Hashable]:
        return frozenset(port_claim(port) for port in display_ports(attributes))

    @classmethod
    async def normalize(cls, p: Proposal, check: "Check") -> dict[str, Any]:
        a = dict(p.attributes)
        kind = DisplayType(a["type"])
        if any(s.get("type", "SPICE") == kind for s in check.siblings("DISPLAY")):
            check.error(p, "type", f"Only one {kind} Display device is supported")
        if kind is DisplayType.VNC:
            if a["password"] and len(a["password"]) > VNC_PASSWORD_MAX:
                check.error(p, "password", "Password for VNC display devices must be 8 characters or less")
        if a["bind"] not in await check.host.bind_addresses():
            check.error(p, "bind", "Requested bind address is not valid", errno.EADDRNOTAVAIL)
        await cls._ports(p, check, a)
        return a

    @staticmethod
    async def _ports(p: Proposal, check: "Check", a: dict[str, Any]) -> None:
        listening = await check.host.listening_ports()
        foreign = await check.host.foreign_display_ports()
        old = p.old or {}
        for key in PORT_KEYS:
            port = a[key]
            if port is None:
                continue
            if not FIRST_DISPLAY_PORT <= port <= LAST_PORT:
                check.error(p, key, "Specified port must be between 5900 and 65535, inclusive")
            elif check.held(port_claim(port)):
                check.error(p, key, f"Specified display port({port}) is already in use by another Display device",
                            errno.EADDRINUSE)
            elif port in RESERVED_PORTS or (port in listening and port != old.get(key)):
                check.error(p, key, f"Port {port} is being used by another process", errno.EADDRINUSE)
            elif port in foreign and port != old.get(key):
                check.error(p, key, f"Port {port} is the display port of libvirt domain {foreign[port]} (not this "
                            "daemon's), which needs it when it runs", errno.EADDRINUSE)
        if a["port"] is not None and a["port"] == a["web_port"]:
            check.error(p, "web_port", "The web port must differ from the display port")
        missing = [k for k in PORT_KEYS if a[k] is None]
        if not missing:
            return
        free = pick_ports(Busy(check.held, listening | set(foreign) | RESERVED_PORTS | display_ports(a)), len(missing))
        if len(free) < len(missing):
            check.error(p, missing[0], "No free ports left for a display device", errno.EADDRINUSE)
            return
        a.update(zip(missing, free))

    def to_xml(self, slot: Slot) -> list[etree._Element]:
        graphics = etree.Element("graphics", type=self.type.lower(), port=str(self.port), autoport="no")
        if self.password:
            graphics.set("passwd", self.password)
        sub(graphics, "listen", type="address", address=self.bind)
        out = [graphics]
        if slot.first_of_type:
            # The guest has one agent port (com.redhat.spice.0); the first display decides who serves it.
            out.append(self._agent_channel())
            out.extend(self._video())
        return out

    def _agent_channel(self) -> etree._Element:
        if self.type is DisplayType.SPICE:
            # The SPICE client speaks to the guest's spice-vdagent: clipboard, screen resized to the window.
            channel = etree.Element("channel", type="spicevmc")
        else:
            # VNC has no agent of its own: QEMU plays the client side of the same protocol and hands the
            # guest's clipboard to VNC clients that support the clipboard extension (noVNC does).
            # https://libvirt.org/formatdomain.html#channel (qemu-vdagent, libvirt 8.4, QEMU 6.1)
            channel = etree.Element("channel", type="qemu-vdagent")
            source = sub(channel, "source")
            sub(source, "clipboard", copypaste="yes")
            sub(source, "mouse", mode="client")
        sub(channel, "target", type="virtio", name="com.redhat.spice.0")
        return channel

    def _video(self) -> list[etree._Element]:
        # One video card, shared by every display of the VM, at the first display's resolution.
        width, height = self.resolution.split("x")
        video = etree.Element("video")
        model = sub(video, "model", type="qxl", ram="131072", vram="65536", vgamem="16384", heads="1",
                    primary="yes")
        sub(model, "resolution", x=width, y=height)
        # An absolute pointer: the guest cursor follows the client's without grabbing it.
        tablet = etree.Element("input", type="tablet", bus="usb")
        return [video, tablet]

    async def unavailable(self, host: "Host") -> list[str]:
        problems = []
        # Only the display port is bound (by QEMU); web_port is a reservation kept for TrueNAS clients that
        # nothing here listens on, so another process holding it does not stop the VM.
        if self.port is not None and self.port in await host.listening_ports():
            problems.append(f"port {self.port} is taken by another process (vm.device.update with \"port\": "
                            "null picks a free one)")
        if self.bind not in await host.bind_addresses():
            problems.append(f"the host has no address {self.bind}")
        return problems

    def identity(self) -> str:
        return f"{self.type} {self.bind}:{self.port}"

    @classmethod
    def public(cls, attributes: Mapping[str, Any]) -> dict[str, Any]:
        return {**attributes, "password": SECRET} if attributes.get("password") else dict(attributes)
