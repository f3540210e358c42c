"""Rates and history computed from libvirt's bulk statistics records (pure), and the bulk read itself against
libvirt's test driver."""
from __future__ import annotations

from typing import Any

import libvirt

from middlewared.plugins.vm.stats import HISTORY_FIELDS, StatsTable
from middlewared.plugins.vm.stats_api import read_own


def raw(cpu_ns: int, vcpu_ns: list[int], wr: int, rx: int, rss_kib: int = 1000) -> dict[str, Any]:
    out: dict[str, Any] = {
        "state.state": 1, "cpu.time": cpu_ns, "vcpu.current": len(vcpu_ns), "balloon.current": 65536,
        "balloon.maximum": 65536, "balloon.rss": rss_kib,
        "block.count": 1, "block.0.name": "vda", "block.0.path": "/p/vda", "block.0.rd.bytes": 0,
        "block.0.wr.bytes": wr, "block.0.rd.reqs": 0, "block.0.wr.reqs": wr // 4096,
        "net.count": 1, "net.0.name": "vnet0", "net.0.rx.bytes": rx, "net.0.tx.bytes": 0,
        "net.0.rx.pkts": rx // 100, "net.0.tx.pkts": 0,
    }
    for i, ns in enumerate(vcpu_ns):
        out[f"vcpu.{i}.time"] = ns
        out[f"vcpu.{i}.delay"] = ns // 2
    return out


def test_first_sample_has_totals_but_no_rates() -> None:
    table = StatsTable()
    [entry] = table.feed([(1, "a", raw(10**9, [5 * 10**8], 4096, 100))], at=0, wall=100).values()
    assert entry["cpu"]["percent"] is None and entry["cpu"]["time_ns"] == 10**9
    assert entry["disks"][0]["write_bytes"] == 4096 and entry["disks"][0]["write_bytes_per_s"] is None
    assert entry["memory"]["rss"] == 1000 * 1024 and entry["memory"]["used"] is None
    assert entry["interval"] is None


def test_rates_per_vcpu_and_per_device() -> None:
    table = StatsTable()
    table.feed([(1, "a", raw(0, [0, 0], 0, 0))], at=0, wall=100)
    # 2 s later: one of two vCPUs was busy the whole time, QEMU used 2.2 s of host CPU.
    [entry] = table.feed([(1, "a", raw(22 * 10**8, [2 * 10**9, 0], 8192, 1000))], at=2, wall=102).values()
    assert entry["cpu"] == {"vcpus": 2, "percent": 50.0, "delay_percent": 25.0, "host_percent": 110.0,
                            "time_ns": 22 * 10**8}
    assert entry["disks"][0]["write_bytes_per_s"] == 4096 and entry["disks"][0]["write_ops_per_s"] == 1
    assert entry["nics"][0]["rx_bytes_per_s"] == 500 and entry["nics"][0]["rx_packets_per_s"] == 5
    assert entry["interval"] == 2


def test_restart_resets_counters_without_negative_rates() -> None:
    table = StatsTable()
    table.feed([(1, "a", raw(10**10, [10**10], 10**6, 10**6))], at=0, wall=0)
    [entry] = table.feed([(1, "a", raw(10**8, [10**8], 0, 0))], at=2, wall=2).values()
    assert entry["cpu"]["percent"] is None and entry["disks"][0]["write_bytes_per_s"] is None


def test_history_is_bounded_and_survives_a_stop() -> None:
    table = StatsTable(interval=2, history_seconds=10)
    for i in range(8):
        table.feed([(1, "a", raw(i * 10**9, [i * 10**9], 0, 0))], at=2 * i, wall=1000 + 2 * i)
    table.feed([], at=16, wall=1016)  # stopped
    points = table.since(1, 0)
    assert len(points) == 5 and set(points[0]) == set(HISTORY_FIELDS)
    assert [p["time"] for p in points] == [1006, 1008, 1010, 1012, 1014]
    assert points[-1]["cpu_percent"] == 50.0  # 1 s of vCPU time per 2 s
    assert table.since(1, 1010) == points[3:] and table.latest == {}
    table.forget([2])
    assert table.since(1, 0) == []


def test_the_bulk_read_asks_only_the_daemons_running_domains() -> None:
    # The test driver's "test" domain runs; a domain of the same libvirtd that is not ours is not read.
    conn = libvirt.open("test:///default")
    try:
        [(name, stats)] = read_own(conn, {"test", "1_gone"})
        assert name == "test" and stats["state.state"] == libvirt.VIR_DOMAIN_RUNNING
        assert read_own(conn, {"1_other"}) == []
        domain = conn.lookupByName("test")
        domain.destroy()
        try:
            assert read_own(conn, {"test"}) == []
        finally:
            domain.create()  # the driver's state is shared by every test of the process
    finally:
        conn.close()
