"""Display ports that other domains on the libvirtd hold: those of other daemon instances and of domains defined
by hand, stopped ones included (a running one's port also shows as a listening socket; a stopped one's only in
its XML). Without them a new display could take a port such a domain would need at its next start.

Reading every domain's XML costs 0.3-0.7 ms a domain (`python -m bench ports`: 0.2 s with 730 domains on a
quiet libvirtd, 1.1 s with 1,535 on a busy one), far more than an allocation may take: it is done once, then kept
current from libvirt's define and undefine events, so that an allocation re-reads only the domains changed since
the last one (0.4 ms for one).
"""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Iterable

import libvirt
from lxml import etree

from middlewared.plugins.vm.domain_xml import METADATA_NS

if TYPE_CHECKING:
    from middlewared.plugins.vm.hypervisor import Hypervisor


class ForeignPorts:
    """The display ports of the domains not tagged as this instance's, by domain name."""

    def __init__(self) -> None:
        self._ports: dict[str, frozenset[int]] = {}
        # What changed since the last read: domain names, or every domain (at start and after a reconnect, when
        # events may have been missed).
        self._changed: set[str] = set()
        self._everything = True
        # One read at a time: a caller during the first read waits for it instead of seeing nothing.
        self._reading = asyncio.Lock()

    def changed(self, name: str | None) -> None:
        """A domain was defined or undefined (None: any may have been); runs on the event loop."""
        if name is None:
            self._everything = True
        else:
            self._changed.add(name)

    async def ports(self, hv: "Hypervisor", instance: str | None) -> dict[int, str]:
        """Port -> the domain holding it, read again where something changed."""
        async with self._reading:
            if self._everything or self._changed:
                await self._read(hv, instance)
        return {port: name for name, ports in self._ports.items() for port in ports}


    async def _read(self, hv: "Hypervisor", instance: str | None) -> None:
        everything, names = self._everything, self._changed
        # Events during the read mark their domains again: read at the next call.
        self._everything, self._changed = False, set()
        try:
            fresh = await hv.run(read_ports, None if everything else names, instance)
        except BaseException:
            self._everything, self._changed = self._everything or everything, self._changed | names
            raise
        if everything:
            self._ports = {}
        for name in names:
            self._ports.pop(name, None)
        self._ports.update(fresh)


def read_ports(conn: libvirt.virConnect, names: Iterable[str] | None, instance: str | None
               ) -> dict[str, frozenset[int]]:
    """The display ports of the named domains (None: of all), leaving out this instance's (blocking)."""
    domains = conn.listAllDomains() if names is None else [d for n in names if (d := _lookup(conn, n))]
    out = {}
    for dom in domains:
        try:
            root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError:
            continue  # undefined meanwhile: its event follows
        owner = root.find(f"metadata/{{{METADATA_NS}}}owner")
        if instance is not None and owner is not None and owner.get("instance") == instance:
            continue  # ours: the rows hold its ports
        ports = frozenset(int(p) for g in root.iterfind("devices/graphics") for key in ("port", "tlsPort")
                          if (p := g.get(key)) and p.isdigit())
        if ports:
            out[str(root.findtext("name"))] = ports
    return out


def _lookup(conn: libvirt.virConnect, name: str) -> libvirt.virDomain | None:
    try:
        return conn.lookupByName(name)
    except libvirt.libvirtError:
        return None  # undefined since its event
