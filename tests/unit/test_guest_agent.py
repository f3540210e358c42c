"""The guest agent's answers turned into vm.get_guest_info's result."""
from __future__ import annotations

import libvirt

from middlewared.plugins.vm.guest_agent import no_agent, parse_info


def test_parse_info() -> None:
    info = {"os.id": "debian", "os.name": "Debian GNU/Linux", "os.version-id": "12", "os.kernel-release": "6.1.0",
            "hostname": "guest", "timezone.name": "UTC", "fs.count": 1, "fs.0.mountpoint": "/", "fs.0.name": "vda1",
            "fs.0.fstype": "ext4", "fs.0.total-bytes": 1000, "fs.0.used-bytes": 400}
    addresses = {"eth0": {"hwaddr": "52:54:00:12:34:56", "addrs": [
        {"type": libvirt.VIR_IP_ADDR_TYPE_IPV4, "addr": "10.0.0.5", "prefix": 24},
        {"type": libvirt.VIR_IP_ADDR_TYPE_IPV6, "addr": "fe80::1", "prefix": 64}]}}
    out = parse_info(info, addresses)
    assert out["agent"] is True and out["reason"] is None and out["hostname"] == "guest"
    assert out["os"]["id"] == "debian" and out["os"]["version_id"] == "12" and out["os"]["machine"] is None
    assert out["filesystems"] == [{"mountpoint": "/", "name": "vda1", "type": "ext4", "total_bytes": 1000,
                                   "used_bytes": 400}]
    assert out["interfaces"][0]["addresses"] == [{"type": "ipv4", "address": "10.0.0.5", "prefix": 24},
                                                 {"type": "ipv6", "address": "fe80::1", "prefix": 64}]
    assert set(no_agent("x")) == set(out) and no_agent("x")["os"] is None
