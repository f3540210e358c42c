"""The libvirt connection's life: a close noticed in a worker thread still leads to a reconnect; bulk reads
have a connection of their own."""
from __future__ import annotations

import asyncio

import libvirt
import pytest
import errno

import libvirt
import pytest

from middlewared.errors import CallError
from middlewared.plugins.vm.hypervisor import Hypervisor


async def test_close_seen_by_a_worker_thread_reconnects() -> None:
    # libvirt runs the close callback in the thread whose call found the connection gone, not only on the
    # event loop; the callback must hand over to the loop instead of failing there.
    hypervisor = Hypervisor("test:///default")
    await hypervisor.start()
    try:
        first = hypervisor.conn
        assert first is not None
        await asyncio.to_thread(hypervisor._on_close, first, 1, None)
        await asyncio.wait_for(hypervisor.connected.wait(), 10)
        for _ in range(100):
            if hypervisor.conn is not None and hypervisor.conn is not first:
                break
            await asyncio.sleep(0.05)
        assert hypervisor.conn is not None and hypervisor.conn is not first
    finally:
        await hypervisor.stop()


async def test_bulk_reads_use_a_connection_of_their_own() -> None:
    # Calls on one connection wait for one another: statistics must not hold up the API's calls.
    hypervisor = Hypervisor("test:///default")
    await hypervisor.start()
    try:
        seen = await hypervisor.run_bulk(lambda conn: conn)
        assert seen is not hypervisor.conn and seen is await hypervisor.run_bulk(lambda conn: conn)

        def fail(conn: libvirt.virConnect) -> None:
            conn.lookupByName("no-such-domain")
        with pytest.raises(CallError) as e:
            await hypervisor.run_bulk(fail)
        assert e.value.errno == errno.ENOENT
        # A failed call drops the connection (it may be dead after a libvirtd restart); the next opens one.
        assert await hypervisor.run_bulk(lambda conn: conn) is not seen
    finally:
        await hypervisor.stop()
    assert hypervisor._bulk is None


async def test_expected_libvirt_errors_are_not_printed(capfd: "pytest.CaptureFixture[str]") -> None:
    hypervisor = Hypervisor("test:///default")
    await hypervisor.start()
    try:
        assert hypervisor.conn is not None
        with pytest.raises(libvirt.libvirtError):
            hypervisor.conn.lookupByName("no-such-domain")
    finally:
        await hypervisor.stop()
    assert "libvirt:" not in capfd.readouterr().err



async def test_watched_facts_are_kept_until_libvirt_reports_a_change() -> None:
    hypervisor = Hypervisor("test:///default")
    await hypervisor.start()
    reads: list[int] = []

    def networks(conn: libvirt.virConnect) -> list[str]:
        reads.append(1)
        return sorted(n.name() for n in conn.listAllNetworks())
    name = "mwwatched"
    try:
        assert set(hypervisor.host_watch._callbacks) == {"networks", "node_devices"}  # the events are registered
        first = await hypervisor.watched("networks", networks)
        assert await hypervisor.watched("networks", networks) == first and len(reads) == 1
        assert hypervisor.conn is not None
        hypervisor.conn.networkDefineXML(f"<network><name>{name}</name></network>")
        assert name in await hypervisor.watched("networks", networks, fresh=True) and len(reads) == 2
        # The event as libvirt delivers it on the daemon's loop (pytest gives each test a loop of its own, and
        # libvirt's event implementation stays on the first one).
        hypervisor.conn.networkLookupByName(name).undefine()
        hypervisor.host_watch._on_change(hypervisor.conn, None, libvirt.VIR_NETWORK_EVENT_UNDEFINED, 0, "networks")
        assert name not in await hypervisor.watched("networks", networks) and len(reads) == 3
        # A fact libvirt reports no changes of is read every time.
        await hypervisor.watched("domains", lambda conn: reads.append(1))
        await hypervisor.watched("domains", lambda conn: reads.append(1))
        assert len(reads) == 5
    finally:
        await hypervisor.stop()


async def test_active_domains_follow_their_states() -> None:
    hypervisor = Hypervisor("test:///default")
    await hypervisor.start()
    try:
        assert "test" in hypervisor.active  # the test driver's running domain, from the first listing
        for domain_state, active in (("PAUSED", True), ("SHUTOFF", False), ("RUNNING", True), (None, False)):
            hypervisor._notify("test", domain_state)
            assert ("test" in hypervisor.active) is active, domain_state
    finally:
        await hypervisor.stop()
