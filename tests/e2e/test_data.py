"""Guest data through the API only, seen from inside the real guest: snapshots with RAM and disk-only.

The guest's init bumps a counter in the first sector of each disk whose serial starts with "data" every 2 s and
prints `GUEST-TICK uptime=<s> <disk>=<counter>/<bytes>` (tests/guest/rootfs/etc/init.d/data).
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.e2e.support import (call_sync, ensure_booted, guest_vm, remove_domain, run_job, serial_command,
                               wait_console)
from tests.ova_maker import make_ova
from tests.support import Daemon, Rpc, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

MIB = 1024 * 1024
_TICK = re.compile(r"^GUEST-TICK uptime=([0-9.]+) (\w+)=(\d+)/(\d+)", re.M)


@dataclass(frozen=True)
class Tick:
    """One GUEST-TICK line of the data disk."""

    uptime: float
    disk: str
    counter: int
    size: int


def ticks(text: str) -> list[Tick]:
    """The data disk's ticks in a console log, in order."""
    return [Tick(float(m[1]), m[2], int(m[3]), int(m[4])) for m in _TICK.finditer(text.replace("\r", ""))]


async def wait_tick(rpc: Rpc, vm_id: int, predicate: Any, what: str, since: int = 0) -> tuple[Tick, str]:
    """The first tick after console offset `since` that satisfies predicate, and the whole console."""
    text = await wait_console(rpc, vm_id, lambda t: any(predicate(k) for k in ticks(t[since:])), what)
    return next(k for k in ticks(text[since:]) if predicate(k)), text


@pytest.fixture(scope="module")
def data_guest(daemon: Daemon, daemon_iso: str) -> Iterator[dict[str, Any]]:
    """A stopped guest: the test ISO and a 64 MiB qcow2 data disk (virtio, serial data...)."""
    name = unique("data")
    disk = {"attributes": {"dtype": "DISK", "type": "VIRTIO", "create_zvol": True,
                           "zvol_name": f"{daemon.pool}/{name}", "zvol_volsize": 64 * MIB, "serial": "data0"},
            "order": 1001}
    vm: dict[str, Any] = call_sync(daemon.socket, "vm.create", guest_vm(name, daemon_iso, devices=[disk]))
    yield vm
    try:
        call_sync(daemon.socket, "vm.delete", vm["id"], {"force": True, "zvols": True})
    finally:
        remove_domain(f"{vm['id']}_{name}")


async def test_snapshot_with_ram_resumes_the_guest_where_it_was(unix_rpc: Rpc, data_guest: dict[str, Any]) -> None:
    vm_id = data_guest["id"]
    await ensure_booted(unix_rpc, vm_id)
    await wait_tick(unix_rpc, vm_id, lambda k: k.counter >= 2, "a second tick")
    snap, _ = await run_job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "ram", "memory": True})
    taken = snap["result"]
    assert taken["memory"] and taken["vm_state"] == "RUNNING", taken
    text = await unix_rpc.call("vm.console_log", vm_id)
    at = ticks(text)[-1]
    # The guest goes on changing its disk after the snapshot ...
    later, text = await wait_tick(unix_rpc, vm_id, lambda k: k.counter >= at.counter + 4, "ticks after the snapshot")
    before = len(text)
    job, seconds = await run_job(unix_rpc, "vm.snapshot.revert", taken["id"], {"force": True})
    assert job["state"] == "SUCCESS", job["error"]
    # ... and after the revert it continues from the snapshot: the counter the disk held then, an uptime that
    # goes on from the snapshot's moment, not from a new boot and not from before the revert.
    resumed, _ = await wait_tick(unix_rpc, vm_id, lambda k: True, "a tick after the revert", before)
    assert at.counter < resumed.counter <= at.counter + 2, (at, resumed, later)
    assert at.uptime <= resumed.uptime < later.uptime, (at, resumed, later)
    print(f"\nRAM snapshot: guest held {taken['held_ms']:.0f} ms; revert job {seconds:.1f} s "
          f"(restore {job['logs_excerpt']})")


async def test_disk_only_snapshot_of_a_running_guest_pauses_it(unix_rpc: Rpc, data_guest: dict[str, Any]) -> None:
    vm_id = data_guest["id"]
    await ensure_booted(unix_rpc, vm_id)
    # A tick at the start of a line (the first one may follow the shell's prompt).
    await wait_tick(unix_rpc, vm_id, lambda k: k.counter >= 2, "a second tick")
    # The guest runs the QEMU guest agent (test_guest_agent.py has the freeze): stopped, it no longer answers.
    await serial_command(unix_rpc, vm_id, 'kill "$(cat /run/qemu-ga.pid)"; echo "agent$((6*7))"', "agent42")
    job, _ = await run_job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "disk"})
    assert job["state"] == "SUCCESS", job["error"]
    # Without an agent the VM is paused for the instant, and the job log says so.
    assert "guest paused" in job["logs_excerpt"] and job["result"]["held_ms"] < 5000, job["logs_excerpt"]
    text = await unix_rpc.call("vm.console_log", vm_id)
    at = ticks(text)[-1]
    await wait_tick(unix_rpc, vm_id, lambda k: k.counter >= at.counter + 2, "ticks after the snapshot")
    await unix_rpc.call("vm.poweroff", vm_id)
    job, _ = await run_job(unix_rpc, "vm.snapshot.revert", job["result"]["id"])
    assert job["state"] == "SUCCESS", job["error"]
    # Disk-only: the VM stays stopped; booted again, the guest finds the counter of the snapshot's instant.
    before = len(await unix_rpc.call("vm.console_log", vm_id))
    began = time.monotonic()
    await unix_rpc.call("vm.start", vm_id)
    first, _ = await wait_tick(unix_rpc, vm_id, lambda k: True, "a tick after the new boot", before)
    assert at.counter < first.counter <= at.counter + 2, (at, first)
    assert first.uptime < time.monotonic() - began + 5
    await unix_rpc.call("vm.poweroff", vm_id)


async def test_disk_grows_under_the_running_guest(unix_rpc: Rpc, data_guest: dict[str, Any]) -> None:
    vm_id = data_guest["id"]
    await ensure_booted(unix_rpc, vm_id)
    await wait_tick(unix_rpc, vm_id, lambda k: k.size == 64 * MIB, "a tick with the first size")
    (disk,) = [d for d in data_guest["devices"] if d["attributes"]["dtype"] == "DISK"]
    await unix_rpc.call("vm.device.resize", disk["id"], {"size": 96 * MIB})
    # The guest sees the new size at once (virtio-blk capacity change), without a restart.
    await wait_tick(unix_rpc, vm_id, lambda k: k.size == 96 * MIB, "a tick with the new size")
    assert (await unix_rpc.call("vm.status", vm_id))["state"] == "RUNNING"
    await unix_rpc.call("vm.poweroff", vm_id)


async def _boots_from_disk(rpc: Rpc, vm: dict[str, Any]) -> None:
    try:
        await ensure_booted(rpc, vm["id"])
    finally:
        await rpc.call("vm.delete", vm["id"], {"force": True, "zvols": True})


async def test_imported_qcow2_and_ova_vmdk_boot(unix_rpc: Rpc, daemon: Daemon, guest_iso: Path) -> None:
    """The guest image (it boots from a disk too) as qcow2 through vm.device.import_disk, and as the VMDK of an
    OVA through vm.import_ova: each VM boots from its imported disk."""
    work = daemon.storage / unique("imports")
    work.mkdir()
    qcow2 = work / "guest.qcow2"
    subprocess.run(["qemu-img", "convert", "-O", "qcow2", str(guest_iso), str(qcow2)], check=True)
    name = unique("impq")
    imported, _ = await run_job(unix_rpc, "vm.device.import_disk",
                                {"source": str(qcow2), "zvol_name": f"{daemon.pool}/{name}"})
    assert imported["state"] == "SUCCESS", imported["error"]
    disk = {"attributes": {"dtype": "DISK", "zvol_name": imported["result"]["zvol_name"], "type": "VIRTIO"}}
    vm = await unix_rpc.call("vm.create", {"name": name, "memory": 256, "autostart": False, "devices": [disk]})
    await _boots_from_disk(unix_rpc, vm)

    archive = make_ova(work, unique("ova"), [guest_iso], vcpus=2, memory_mib=256, nics=[])
    job, _ = await run_job(unix_rpc, "vm.import_ova", {"path": str(archive)})
    assert job["state"] == "SUCCESS", job["error"]
    vm = job["result"]["vm"]
    assert (vm["vcpus"], vm["memory"], len(vm["devices"])) == (2, 256, 1)
    await _boots_from_disk(unix_rpc, vm)


async def test_cloud_init_user_data_reaches_the_guest(unix_rpc: Rpc, daemon: Daemon, daemon_iso: str) -> None:
    word = unique("hello")
    seed = {"attributes": {"dtype": "CLOUD_INIT", "hostname": "seeded",
                           "user_data": f"#cloud-config\nguest_echo: {word}\n"}}
    vm = await unix_rpc.call("vm.create", guest_vm(unique("ci"), daemon_iso, devices=[seed]))
    try:
        text = await wait_console_after_start(unix_rpc, vm["id"], f"GUEST-CLOUDINIT echo={word}")
        assert "GUEST-CLOUDINIT hostname=seeded" in text
    finally:
        await unix_rpc.call("vm.delete", vm["id"], {"force": True})


async def wait_console_after_start(rpc: Rpc, vm_id: int, line: str) -> str:
    await rpc.call("vm.start", vm_id)
    return await wait_console(rpc, vm_id, lambda t: line in t, line)
