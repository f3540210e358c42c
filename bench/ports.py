"""bench ports: what seeing other daemons' stopped VMs' display ports costs, with N domains on the libvirtd.

Each figure beside today's per-allocation host check, the listening sockets (/proc/net/tcp*), in the same run:
- the first read of every domain's XML (once per daemon start, and after a reconnect to libvirtd);
- what an allocation reads after one domain was defined (only that domain's XML, from its event).
"""
from __future__ import annotations

import statistics
import time
import uuid
from typing import Any, Callable

import libvirt

from bench.common import Table, fmt, quiet_libvirt, ratio
from middlewared.plugins.vm_device import netif
from middlewared.plugins.vm_device.foreign_ports import read_ports

URI = "qemu:///system"
HEADERS = ["figure", "ms", "raw ms", "ratio", "note"]


def median_ms(fn: Callable[[], Any], rounds: int = 7) -> float:
    times = []
    for _ in range(rounds):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times) * 1000


async def run(domains: int = 500) -> None:
    """Define `domains` stopped domains with a display, as another daemon would, measure, undefine them."""
    quiet_libvirt()
    conn = libvirt.open(URI)
    prefix = f"benchports{uuid.uuid4().hex[:8]}"
    names = [f"{prefix}_{i}" for i in range(domains)]
    try:
        for i, name in enumerate(names):
            conn.defineXML(f"""<domain type="qemu"><name>{name}</name><memory unit="MiB">64</memory>
              <os><type arch="x86_64">hvm</type></os><devices><graphics type="spice" port="{20000 + i}"
              autoport="no"><listen type="address" address="127.0.0.1"/></graphics></devices></domain>""")
        total = len(conn.listAllDomains())
        instance = str(uuid.uuid4())
        baseline = median_ms(netif.listening_ports)
        full = median_ms(lambda: read_ports(conn, None, instance))
        one = median_ms(lambda: read_ports(conn, [names[-1]], instance))
        table = Table(f"display ports of other daemons' stopped VMs, {total:,} domains on the libvirtd "
                      f"({domains:,} defined by the bench)", HEADERS)
        table.add("first read, every domain", fmt(full), fmt(baseline), ratio(full, baseline),
                  "at start-up and reconnect")
        table.add("an allocation after one define", fmt(one, 2), fmt(baseline), ratio(one, baseline),
                  "per allocation, on top of the raw check")
        table.note("raw: today's per-allocation check of listening sockets (/proc/net/tcp and tcp6)")
        table.print()
    finally:
        for name in names:
            try:
                conn.lookupByName(name).undefine()
            except libvirt.libvirtError:
                pass
        conn.close()
