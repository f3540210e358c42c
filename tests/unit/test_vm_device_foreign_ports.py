"""Display ports of other daemons' domains (libvirt's test driver): read once, then only what events name."""
from __future__ import annotations

import uuid

import libvirt

from middlewared.plugins.vm.domain_xml import METADATA_NS
from middlewared.plugins.vm_device.foreign_ports import ForeignPorts, read_ports
from tests.unit.test_vm_device_intents import DriverHypervisor

OURS = str(uuid.uuid4())


def define(conn: libvirt.virConnect, name: str, port: int, instance: str | None) -> None:
    owner = (f'<metadata><mw:owner xmlns:mw="{METADATA_NS}" instance="{instance}" vm="1"/></metadata>'
             if instance else "")
    conn.defineXML(f"""<domain type="test"><name>{name}</name><memory>1024</memory>{owner}
      <os><type>hvm</type></os><devices><graphics type="spice" port="{port}" autoport="no"/>
      <graphics type="vnc" port="-1" autoport="yes"/></devices></domain>""")


async def test_other_domains_ports_kept_current_from_events() -> None:
    hv = DriverHypervisor()
    prefix = uuid.uuid4().hex[:8]
    define(hv.conn, f"{prefix}_theirs", 7001, str(uuid.uuid4()))
    define(hv.conn, f"{prefix}_by_hand", 7002, None)
    define(hv.conn, f"{prefix}_ours", 7003, OURS)
    found = read_ports(hv.conn, None, OURS)
    assert found[f"{prefix}_theirs"] == {7001} and found[f"{prefix}_by_hand"] == {7002}
    assert f"{prefix}_ours" not in found

    cache = ForeignPorts()
    ports = await cache.ports(hv, OURS)  # type: ignore[arg-type]
    assert ports[7001] == f"{prefix}_theirs" and 7003 not in ports
    hv.conn.lookupByName(f"{prefix}_theirs").undefine()
    define(hv.conn, f"{prefix}_new", 7004, None)
    assert 7001 in await cache.ports(hv, OURS)  # type: ignore[arg-type]  # no event yet: nothing re-read
    cache.changed(f"{prefix}_theirs")
    cache.changed(f"{prefix}_new")
    ports = await cache.ports(hv, OURS)  # type: ignore[arg-type]
    assert 7001 not in ports and ports[7004] == f"{prefix}_new" and ports[7002] == f"{prefix}_by_hand"
