"""vm.snapshot.* over the API on real libvirt and qcow2 volumes: the tree, revert, delete, refusals, events.

The guest here is firmware only (no boot medium): what a guest sees is checked in tests/e2e."""
from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    expect_call_error, expect_invalid, storage, vm_with,
)
from tests.support import Daemon, Rpc, RpcError, unique

pytestmark = pytest.mark.timeout(300)


async def job(rpc: Rpc, method: str, *params: Any, timeout: float = 120) -> Any:
    """Run a job method to its end (the call answers when the job ends); return its result."""
    await rpc.call("core.set_options", {"legacy_jobs": False})
    try:
        return await rpc.call(method, *params, timeout=timeout)
    finally:
        await rpc.call("core.set_options", {"legacy_jobs": True})


async def job_log(rpc: Rpc, method: str) -> str:
    """The log excerpt of the last job of a method."""
    jobs = await rpc.call("core.get_jobs", [["method", "=", method]], {"order_by": ["-id"]})
    return str(jobs[0]["logs_excerpt"] or "")


def tags(path: str) -> set[str]:
    """Internal snapshot tags of a qcow2 image (read while a guest may hold it)."""
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output", "json", path], check=True,
                                     capture_output=True, text=True).stdout)
    return {s["name"] for s in info.get("snapshots", [])}


def pattern(path: str, byte: int) -> bool:
    """Whether the image's first 64 KiB are all `byte` (qemu-io reads qcow2 through its format)."""
    done = subprocess.run(["qemu-io", "-r", "-f", "qcow2", "-U", "-c", f"read -P {byte} 0 64k", path],
                          capture_output=True, text=True)
    return "Pattern verification failed" not in done.stdout and done.returncode == 0


def write(path: str, byte: int) -> None:
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -P {byte} 0 64k", path], check=True,
                   capture_output=True)


@pytest.fixture
async def disk_vm(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> AsyncIterator[dict[str, Any]]:
    """A stopped VM with one new DISK volume (qcow2 by default)."""
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('snap')}",
            "zvol_volsize": 16 << 20, "type": "VIRTIO"}
    async with vm_with(unix_rpc, disk) as vm:
        yield vm


def disk_path(vm: dict[str, Any]) -> str:
    return str(next(d for d in vm["devices"] if d["attributes"]["dtype"] == "DISK")["attributes"]["path"])


async def test_new_disk_volumes_are_qcow2(disk_vm: dict[str, Any]) -> None:
    disk = next(d for d in disk_vm["devices"] if d["attributes"]["dtype"] == "DISK")
    assert disk["attributes"]["format"] == "qcow2"
    info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", disk_path(disk_vm)],
                                     check=True, capture_output=True, text=True).stdout)
    assert info["format"] == "qcow2" and info["virtual-size"] == 16 << 20


async def test_tree_revert_delete_of_a_stopped_vm(unix_rpc: Rpc, disk_vm: dict[str, Any]) -> None:
    path, vm_id = disk_path(disk_vm), disk_vm["id"]
    await unix_rpc.call("core.subscribe", "vm.snapshot.query")
    write(path, 1)
    s1 = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "one", "description": "first"})
    assert s1["parent"] is None and s1["current"] and not s1["memory"] and s1["vm_state"] == "STOPPED"
    assert s1["description"] == "first" and s1["size"] > 0 and s1["held_ms"] is None
    assert "qemu-img" in await job_log(unix_rpc, "vm.snapshot.create")
    added = await unix_rpc.next_event(lambda e: e["params"]["collection"] == "vm.snapshot.query"
                                      and e["params"]["msg"] == "added")
    assert added["params"]["fields"]["name"] == "one"
    write(path, 2)
    s2 = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "two"})
    assert s2["parent"] == s1["id"]
    assert (await unix_rpc.call("vm.get_instance", vm_id))["snapshot_count"] == 2
    write(path, 3)

    reverted = await job(unix_rpc, "vm.snapshot.revert", s1["id"])
    assert reverted["current"] and pattern(path, 1)
    # A snapshot after a revert branches from the reverted node.
    s3 = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "three"})
    assert s3["parent"] == s1["id"]
    one = await unix_rpc.call("vm.snapshot.get_instance", s1["id"])
    assert sorted(one["children"]) == [s2["id"], s3["id"]] and not one["current"]

    await job(unix_rpc, "vm.snapshot.revert", s2["id"])
    assert pattern(path, 2)
    # Deleting an inner node: its children move to its parent (none: they become roots), their data stays.
    assert await job(unix_rpc, "vm.snapshot.delete", s1["id"]) is True
    rest = {s["name"]: s for s in await unix_rpc.call("vm.snapshot.query", [["vm", "=", vm_id]])}
    assert set(rest) == {"two", "three"} and rest["two"]["parent"] is None and rest["two"]["current"]
    assert len(tags(path)) == 2
    await job(unix_rpc, "vm.snapshot.revert", s3["id"])
    assert pattern(path, 1)
    await job(unix_rpc, "vm.snapshot.delete", s3["id"])
    await job(unix_rpc, "vm.snapshot.delete", s2["id"])
    assert tags(path) == set() and (await unix_rpc.call("vm.get_instance", vm_id))["snapshot_count"] == 0


async def test_running_vm_disk_only_pauses_and_revert_needs_force(unix_rpc: Rpc,
                                                                  disk_vm: dict[str, Any]) -> None:
    path, vm_id = disk_path(disk_vm), disk_vm["id"]
    write(path, 7)
    await unix_rpc.call("vm.start", vm_id)
    try:
        snap = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "live"})
        assert snap["vm_state"] == "RUNNING" and not snap["memory"] and snap["held_ms"] is not None
        log = await job_log(unix_rpc, "vm.snapshot.create")
        assert "paused" in log and "ms" in log, log
        assert (await unix_rpc.call("vm.status", vm_id))["state"] == "RUNNING"
        assert len(tags(path)) == 1
        with pytest.raises(RpcError) as e:
            await job(unix_rpc, "vm.snapshot.revert", snap["id"])
        assert e.value.errno == 16 and "revert with force" in str(e.value.reason), e.value.error
        # Deleting works while the guest runs (QEMU removes it from the open image).
        await job(unix_rpc, "vm.snapshot.delete", snap["id"])
        assert tags(path) == set()
        mem = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "ram", "memory": True})
        assert mem["memory"] and mem["memory_size"] > 0 and mem["size"] > mem["memory_size"]
        # The job logs say what each step took: where a slow snapshot or revert spends its time.
        log = await job_log(unix_rpc, "vm.snapshot.create")
        assert re.search(r"disk snapshot: \d+ ms", log) and re.search(r"RAM saved: \d+ ms", log), log
        await job(unix_rpc, "vm.snapshot.revert", mem["id"], {"force": True})
        assert (await unix_rpc.call("vm.status", vm_id))["state"] == "RUNNING"
        log = await job_log(unix_rpc, "vm.snapshot.revert")
        assert re.search(r"powered the running VM off: \d+ ms", log) and "restored the saved guest" in log, log
        assert pattern(path, 7)
    finally:
        await unix_rpc.call("vm.poweroff", vm_id)


async def test_refusals_change_nothing(unix_rpc: Rpc, daemon: Daemon, storage: Path,
                                       disk_vm: dict[str, Any]) -> None:
    vm_id = disk_vm["id"]
    await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "a"})
    with pytest.raises(RpcError) as e:
        await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "a"})
    assert e.value.code == -32602 or "already" in json.dumps(e.value.error)
    assert await expect_invalid(unix_rpc, "vm.snapshot.create", {"vm": vm_id}) == [("vm_snapshot_create.name", 22)]
    assert await expect_invalid(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "x", "bogus": 1})
    with pytest.raises(RpcError) as e:
        await job(unix_rpc, "vm.snapshot.create", {"vm": 999999, "name": "x"})
    assert "does not exist" in json.dumps(e.value.error)
    with pytest.raises(RpcError) as e:
        await job(unix_rpc, "vm.snapshot.delete", 999999)
    assert "does not exist" in json.dumps(e.value.error)
    raw = {"dtype": "RAW", "path": str(storage / unique("raw")), "size": 1 << 20}
    raw_volume = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('rawvol')}",
                  "zvol_volsize": 1 << 20, "format": "raw"}
    async with vm_with(unix_rpc, raw, raw_volume) as other:
        with pytest.raises(RpcError) as e:
            await job(unix_rpc, "vm.snapshot.create", {"vm": other["id"], "name": "x"})
        reason = json.dumps(e.value.error)
        assert "RAW disk" in reason and "is raw" in reason, reason
        assert await unix_rpc.call("vm.snapshot.query", [["vm", "=", other["id"]]]) == []
    assert [s["name"] for s in await unix_rpc.call("vm.snapshot.query", [["vm", "=", vm_id]])] == ["a"]


async def test_vm_delete_removes_snapshots(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('del')}",
            "zvol_volsize": 1 << 20}
    async with vm_with(unix_rpc, disk) as vm:
        await job(unix_rpc, "vm.snapshot.create", {"vm": vm["id"], "name": "a"})
        state_dirs = list((storage / ".vm-snapshots").glob(vm["uuid"]))
        await unix_rpc.call("vm.delete", vm["id"], {"zvols": True})
        assert await unix_rpc.call("vm.snapshot.query", [["vm", "=", vm["id"]]]) == []
        await asyncio.sleep(0)
        assert all(not d.exists() for d in state_dirs)


async def test_clone_gets_its_own_disks_and_seed(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('cl')}",
            "zvol_volsize": 1 << 20}
    async with vm_with(unix_rpc, disk, {"dtype": "CLOUD_INIT", "hostname": "h"}) as vm:
        write(disk_path(vm), 4)
        await job(unix_rpc, "vm.snapshot.create", {"vm": vm["id"], "name": "a"})
        await unix_rpc.call("vm.start", vm["id"])
        try:
            # The running guest holds its qcow2 image locked: the copy reads it shared.
            clone = await unix_rpc.call("vm.clone", vm["id"])
        finally:
            await unix_rpc.call("vm.poweroff", vm["id"])
        try:
            assert clone["snapshot_count"] == 0
            path = disk_path(clone)
            assert path != disk_path(vm) and tags(path) == set() and pattern(path, 4)
            seeds = {d["attributes"]["seed"] for c in (vm, clone) for d in c["devices"]
                     if d["attributes"]["dtype"] == "CLOUD_INIT"}
            assert len(seeds) == 2
        finally:
            await unix_rpc.call("vm.delete", clone["id"], {"zvols": True})
