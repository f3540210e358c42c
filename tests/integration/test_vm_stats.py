"""vm.get_stats, vm.get_stats_history and the vm.stats event against the real daemon and a running TCG VM."""
from __future__ import annotations

import asyncio
import errno
import time
from typing import Any

import pytest

from tests.integration.test_auth_daemon import as_root, auth_daemon, logged_in, make_user
from tests.support import Daemon, Rpc, RpcError, unique

__all__ = ["auth_daemon"]

pytestmark = pytest.mark.timeout(300)


async def wait_stats(rpc: Rpc, vm_id: int, timeout: float = 60) -> dict[str, Any]:
    """The VM's entry once it has a rate (its second sample)."""
    deadline = time.monotonic() + timeout
    while True:
        entries = await rpc.call("vm.get_stats", [vm_id])
        if entries and entries[0]["cpu"]["percent"] is not None:
            return dict(entries[0])
        if time.monotonic() > deadline:
            raise AssertionError(f"no stats with rates for VM {vm_id}: {entries}")
        await asyncio.sleep(0.5)


async def test_stats_of_a_running_vm(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    assert await unix_rpc.call("vm.get_stats", [vm["id"]]) == []  # stopped: no entry
    began = time.time()
    await unix_rpc.call("vm.start", vm["id"])
    try:
        entry = await wait_stats(unix_rpc, vm["id"])
        assert entry["name"] == vm["name"] and entry["cpu"]["vcpus"] == 1
        assert 0 <= entry["cpu"]["percent"] <= 150 and entry["cpu"]["host_percent"] > 0  # OVMF boots under TCG
        assert entry["memory"]["maximum"] == 64 * 1024 * 1024 and entry["memory"]["rss"] > 0
        assert 1.0 <= entry["interval"] <= 30  # 2 s, stretched when libvirtd answers slowly (a loaded host)
        assert vm["id"] in {e["id"] for e in await unix_rpc.call("vm.get_stats")}

        await unix_rpc.call("core.subscribe", "vm.stats")
        event = await unix_rpc.next_event(lambda e: e.get("params", {}).get("collection") == "vm.stats", 10)
        fields = event["params"]["fields"]
        assert fields["interval"] == 2.0 and vm["id"] in {v["id"] for v in fields["vms"]}

        history = await unix_rpc.call("vm.get_stats_history", vm["id"])
        assert len(history) >= 2 and all(p["time"] >= began - 1 for p in history)
        assert history[-1]["cpu_percent"] is not None and history[-1]["memory_rss"] > 0
        assert await unix_rpc.call("vm.get_stats_history", vm["id"], history[-1]["time"]) == []
    finally:
        await unix_rpc.call("vm.poweroff", vm["id"])
    await asyncio.sleep(2.5)
    assert await unix_rpc.call("vm.get_stats", [vm["id"]]) == []
    assert await unix_rpc.call("vm.get_stats_history", vm["id"])  # the hour is kept after a stop


async def test_stats_errors(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.get_stats_history", 999999)
    assert e.value.errno == errno.ENOENT and "does not exist" in str(e.value.reason)
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.get_stats", "all")
    assert e.value.errno == errno.EINVAL
    assert await unix_rpc.call("vm.get_stats", [999999]) == []


async def test_scoped_reader_sees_only_its_vms(auth_daemon: Daemon) -> None:
    """A user holding VM_READ on one VM gets only that VM's stats, in calls and in the event."""
    async with as_root(auth_daemon) as root:
        mine, other = [await root.call("vm.create", {"name": unique("st"), "memory": 64, "autostart": False})
                       for _ in range(2)]
        username, password, user_id = await make_user(auth_daemon)
        await root.call("acl.create", {"user": user_id, "role": "VM_READ", "vm": mine["id"]})
        try:
            for vm in (mine, other):
                await root.call("vm.start", vm["id"])
            await wait_stats(root, mine["id"])
            await wait_stats(root, other["id"])
            async with logged_in(auth_daemon, username, password) as rpc:
                assert [e["id"] for e in await rpc.call("vm.get_stats")] == [mine["id"]]
                assert await rpc.call("vm.get_stats", [other["id"]]) == []
                assert await rpc.call("vm.get_stats_history", mine["id"])
                with pytest.raises(RpcError) as e:
                    await rpc.call("vm.get_stats_history", other["id"])
                assert e.value.errno == errno.EACCES
                await rpc.call("core.subscribe", "vm.stats")
                event = await rpc.next_event(lambda e: e.get("params", {}).get("collection") == "vm.stats", 10)
                assert [v["id"] for v in event["params"]["fields"]["vms"]] == [mine["id"]]
        finally:
            for vm in (mine, other):
                await root.call("vm.delete", vm["id"], {"force": True})
