"""The libvirt connection's life: a close noticed in a worker thread still leads to a reconnect."""
from __future__ import annotations

import asyncio

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
