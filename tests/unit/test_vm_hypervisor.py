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
