"""Snapshot operations and lifecycle calls of one VM queue behind each other instead of interleaving (real libvirt,
a firmware-only guest: it ignores ACPI, so a graceful stop holds the VM for its whole shutdown_timeout)."""
from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import storage, vm_with  # noqa: F401 (fixtures)
from tests.integration.test_vm_snapshot import disk_path, job, pattern, write
from tests.support import Daemon, Rpc, unique

pytestmark = pytest.mark.timeout(300)


async def job_entry(rpc: Rpc, job_id: int) -> dict[str, Any]:
    jobs = await rpc.call("core.get_jobs", [["id", "=", job_id]])
    return dict(jobs[0])


async def test_start_during_a_revert_waits_then_succeeds(unix_rpc: Rpc, daemon: Daemon) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('guard')}",
            "zvol_volsize": 1 << 20, "type": "VIRTIO"}
    async with vm_with(unix_rpc, disk) as vm:
        vm_id, path = vm["id"], disk_path(vm)
        write(path, 5)
        snap = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "base"})
        write(path, 6)
        await unix_rpc.call("vm.start", vm_id)
        # A graceful stop of a guest that ignores ACPI holds the VM for shutdown_timeout (5 s), then powers it off.
        stop_id = await unix_rpc.call("vm.stop", vm_id, {"force_after_timeout": True})
        await asyncio.sleep(0.5)
        revert_id = await unix_rpc.call("vm.snapshot.revert", snap["id"], {"force": True})
        await asyncio.sleep(0.5)
        revert = await job_entry(unix_rpc, revert_id)
        assert revert["state"] == "RUNNING" and "Waiting for the other operations" in revert["progress"]["description"]
        # Issued while the revert waits: without the ordering this start would fail at once (the guest still runs)
        # or race the revert for the image lock. It waits for the stop and the revert, then starts the VM.
        await unix_rpc.call("vm.start", vm_id, timeout=60)
        started = time.time()
        try:
            stop, revert = await job_entry(unix_rpc, stop_id), await job_entry(unix_rpc, revert_id)
            assert stop["state"] == "SUCCESS" and revert["state"] == "SUCCESS", (stop, revert)
            assert (await unix_rpc.call("vm.status", vm_id))["state"] == "RUNNING"
            assert revert["time_finished"]["$date"] / 1000 <= started
            assert pattern(path, 5)
        finally:
            await unix_rpc.call("vm.poweroff", vm_id)


async def test_snapshot_create_then_a_resize_and_an_update_wait_in_turn(unix_rpc: Rpc, daemon: Daemon) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('guard')}",
            "zvol_volsize": 1 << 20, "type": "VIRTIO"}
    async with vm_with(unix_rpc, disk) as vm:
        await unix_rpc.call("vm.start", vm["id"])
        stop_id = await unix_rpc.call("vm.stop", vm["id"], {"force_after_timeout": True})
        await asyncio.sleep(0.5)
        # Both wait for the stop; the snapshot, queued first, runs first, then the update.
        snapshot_id = await unix_rpc.call("vm.snapshot.create", {"vm": vm["id"], "name": "q"})
        await asyncio.sleep(0.5)
        # A device write waits for the snapshot too (the snapshot recorded the disk as it was).
        disk_id = next(d["id"] for d in vm["devices"] if d["attributes"]["dtype"] == "DISK")
        await unix_rpc.call("vm.device.resize", disk_id, {"size": 2 << 20}, timeout=60)
        assert (await job_entry(unix_rpc, snapshot_id))["state"] == "SUCCESS"
        updated = await unix_rpc.call("vm.update", vm["id"], {"description": "after"}, timeout=60)
        snapshot = await job_entry(unix_rpc, snapshot_id)
        assert snapshot["state"] == "SUCCESS" and snapshot["result"]["vm_state"] == "STOPPED", snapshot
        assert updated["description"] == "after" and updated["snapshot_count"] == 1
        assert (await job_entry(unix_rpc, stop_id))["state"] == "SUCCESS"
