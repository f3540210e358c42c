"""The QEMU guest agent in the real test guest, through the API only: vm.get_guest_info reports the guest's
host name, OS and its NIC's address; a disk-only snapshot of the running guest freezes its filesystems through
the agent instead of pausing it.

The guest starts qemu-ga on its virtio-serial port before GUEST-READY and gives each NIC a link-local address
derived from its MAC, printed as `GUEST-ADDRESS <nic> <address>` (tests/guest/rootfs/etc/init.d/agent).
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import Any, Iterator

import pytest

from tests.e2e.support import call_sync, ensure_booted, guest_vm, remove_domain, run_job, state, wait_console
from tests.support import Daemon, Rpc, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MIB = 1024 * 1024
_ADDRESS = re.compile(r"^GUEST-ADDRESS (\S+) (\S+)", re.M)
_TICK = re.compile(r"^GUEST-TICK uptime=\S+ \w+=(\d+)/", re.M)


@pytest.fixture(scope="module")
def agent_guest(daemon: Daemon, daemon_iso: str, bridge: str) -> Iterator[dict[str, Any]]:
    """A stopped guest: the test ISO, a 64 MiB qcow2 data disk (it ticks, so the guest shows it runs) and a
    virtio NIC."""
    name = unique("agent")
    disk = {"attributes": {"dtype": "DISK", "type": "VIRTIO", "create_zvol": True,
                           "zvol_name": f"{daemon.pool}/{name}", "zvol_volsize": 64 * MIB, "serial": "data0"},
            "order": 1001}
    nic = {"attributes": {"dtype": "NIC", "type": "VIRTIO", "nic_attach": bridge}, "order": 1002}
    vm: dict[str, Any] = call_sync(daemon.socket, "vm.create", guest_vm(name, daemon_iso, devices=[disk, nic]))
    yield vm
    try:
        call_sync(daemon.socket, "vm.delete", vm["id"], {"force": True, "zvols": True})
    finally:
        remove_domain(f"{vm['id']}_{name}")


async def guest_info(rpc: Rpc, vm_id: int, timeout: float = 60) -> dict[str, Any]:
    """vm.get_guest_info once the agent answers (it starts just before GUEST-READY and libvirt connects to it
    when the guest opens its port)."""
    deadline = time.monotonic() + timeout
    while True:
        info: dict[str, Any] = await rpc.call("vm.get_guest_info", vm_id)
        if info["agent"] or time.monotonic() > deadline:
            return info
        await asyncio.sleep(1)


async def test_guest_info_reports_host_name_os_and_the_nics_address(unix_rpc: Rpc,
                                                                    agent_guest: dict[str, Any]) -> None:
    vm_id = agent_guest["id"]
    await ensure_booted(unix_rpc, vm_id)
    text = await unix_rpc.call("vm.console_log", vm_id)
    (nic, address), = _ADDRESS.findall(text.replace("\r", ""))[-1:]
    info = await guest_info(unix_rpc, vm_id)
    assert info["agent"] and info["reason"] is None, info
    assert info["hostname"] == "mwguest", info
    # os-release of the guest (rootfs/etc/os-release) and the running Debian kernel's uname.
    assert info["os"]["id"] == "middlewared-test-guest", info["os"]
    assert info["os"]["kernel_release"].endswith("-amd64") and info["os"]["machine"] == "x86_64", info["os"]
    mac = next(d["attributes"]["mac"] for d in agent_guest["devices"] if d["attributes"]["dtype"] == "NIC")
    seen = {i["name"]: i for i in info["interfaces"]}
    assert seen[nic]["mac"] == mac, seen
    assert {"type": "ipv4", "address": address, "prefix": 16} in seen[nic]["addresses"], seen[nic]


async def test_disk_only_snapshot_of_a_running_guest_freezes_it(unix_rpc: Rpc, agent_guest: dict[str, Any]) -> None:
    vm_id = agent_guest["id"]
    await ensure_booted(unix_rpc, vm_id)
    assert (await guest_info(unix_rpc, vm_id))["agent"]
    job, _ = await run_job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "frozen"})
    assert job["state"] == "SUCCESS", job["error"]
    logs = job["logs_excerpt"]
    # The guest's filesystems all live in RAM (initramfs, tmpfs, proc, sysfs): the agent freezes none of them,
    # and says so; it still answers the freeze, which is what spares the guest the pause.
    assert "guest filesystems frozen through the QEMU guest agent: 0" in logs, logs
    assert "filesystems frozen by the guest agent for" in logs and "paus" not in logs, logs
    # The guest was never stopped: it is running and goes on ticking on its data disk.
    assert await state(unix_rpc, vm_id) == "RUNNING"
    since = len(await unix_rpc.call("vm.console_log", vm_id))
    await wait_console(unix_rpc, vm_id, lambda t: len(_TICK.findall(t[since:].replace("\r", ""))) >= 2,
                       "two ticks after the snapshot", 60)
    await unix_rpc.call("vm.poweroff", vm_id)
