"""A real guest through the API only: it sees the disks and NIC the API made, shuts down on ACPI, restarts,
suspends, and a clone of it boots alongside with its own MAC and disk.

The tests share one guest and run in file order, each starting it when it finds it stopped, so a boot
(~22 s under TCG) is spent only where a test needs a fresh one.
"""
from __future__ import annotations

import asyncio
import uuid
from typing import Any, Iterator

import pytest

from tests.e2e.support import (Boot, boots, call_sync, ensure_booted, guest_vm, ready_count, remove_domain,
                               run_job, state, vm_events, wait_ready)
from tests.support import Daemon, Rpc, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MIB = 1024 * 1024
SHUTDOWN_TIMEOUT = 90


def serial(prefix: str) -> str:
    # virtio-blk and ATA both carry at most 20 bytes of serial number.
    return f"{prefix}{uuid.uuid4().hex[:10].upper()}"


def attributes(vm: dict[str, Any], dtype: str) -> dict[str, Any]:
    """The attributes of the VM's only device of a type."""
    (device,) = [d for d in vm["devices"] if d["attributes"]["dtype"] == dtype]
    return dict(device["attributes"])


@pytest.fixture(scope="module")
def guest(daemon: Daemon, daemon_iso: str, bridge: str) -> Iterator[dict[str, Any]]:
    """A stopped VM: the test ISO as CD-ROM, a virtio DISK volume, an AHCI RAW file and a virtio NIC."""
    name = unique("e2e")
    devices = [
        {"attributes": {"dtype": "DISK", "type": "VIRTIO", "create_zvol": True, "zvol_name": f"{daemon.pool}/{name}",
                        "zvol_volsize": 64 * MIB, "serial": serial("DISK")}, "order": 1001},
        {"attributes": {"dtype": "RAW", "type": "AHCI", "path": str(daemon.storage / f"{name}.img"),
                        "size": 32 * MIB, "exists": False, "serial": serial("RAW")}, "order": 1002},
        {"attributes": {"dtype": "NIC", "type": "VIRTIO", "nic_attach": bridge}, "order": 1003},
    ]
    args = guest_vm(name, daemon_iso, devices=devices) | {"shutdown_timeout": SHUTDOWN_TIMEOUT}
    vm: dict[str, Any] = call_sync(daemon.socket, "vm.create", args)
    yield vm
    try:
        call_sync(daemon.socket, "vm.delete", vm["id"], {"force": True, "zvols": True})
    finally:
        remove_domain(f"{vm['id']}_{name}")


def assert_sees_devices(boot: Boot, vm: dict[str, Any]) -> None:
    """The guest saw the VM's DISKs on virtio and RAW files on SATA by serial, a CD-ROM, its NICs by MAC."""
    by_serial = {d["serial"]: name for name, d in boot.disks.items()}
    for device in vm["devices"]:
        a = device["attributes"]
        if a["dtype"] == "DISK":
            assert by_serial.get(a["serial"], "").startswith("vd"), (a, boot.disks)
            assert boot.disks[by_serial[a["serial"]]]["bus"] == "virtio"
        elif a["dtype"] == "RAW":
            assert by_serial.get(a["serial"], "").startswith("sd"), (a, boot.disks)
            assert boot.disks[by_serial[a["serial"]]]["size"] == str(a["size"])
            assert boot.disks[by_serial[a["serial"]]]["bus"] == "sata"
    assert any(name.startswith("sr") for name in boot.disks), boot.disks
    assert boot.macs == {d["attributes"]["mac"].lower() for d in vm["devices"]
                         if d["attributes"]["dtype"] == "NIC"}, boot.nics
    assert "WARNING" not in boot.events, boot.events


async def test_boot_reports_the_devices_the_api_made(unix_rpc: Rpc, guest: dict[str, Any]) -> None:
    vm = await unix_rpc.call("vm.get_instance", guest["id"])
    assert attributes(vm, "NIC")["mac"]
    assert await unix_rpc.call("vm.start", vm["id"]) is None
    boot = await wait_ready(unix_rpc, vm["id"])
    assert_sees_devices(boot, vm)


async def test_suspend_and_resume(unix_rpc: Rpc, guest: dict[str, Any]) -> None:
    await ensure_booted(unix_rpc, guest["id"])
    await unix_rpc.call("vm.suspend", guest["id"])
    assert await state(unix_rpc, guest["id"]) == "SUSPENDED"
    paused = await unix_rpc.call("vm.console_log", guest["id"])
    await asyncio.sleep(1)
    assert await unix_rpc.call("vm.console_log", guest["id"]) == paused
    await unix_rpc.call("vm.resume", guest["id"])
    assert await state(unix_rpc, guest["id"]) == "RUNNING"
    # The resumed guest still reacts to the power button: the graceful restart below relies on it.


async def test_restart_boots_the_guest_again(unix_rpc: Rpc, guest: dict[str, Any]) -> None:
    await ensure_booted(unix_rpc, guest["id"])
    before = ready_count(await unix_rpc.call("vm.console_log", guest["id"]))
    job, _ = await run_job(unix_rpc, "vm.restart", guest["id"])
    assert job["state"] == "SUCCESS", job
    # The marker appears once more (at least twice in all: the guest had booted before).
    boot = await wait_ready(unix_rpc, guest["id"], before + 1)
    # The previous boot ended by the guest's own ACPI power-off, not by a forced one.
    previous = [b for b in boots(await unix_rpc.call("vm.console_log", guest["id"])) if b.ready][-2]
    assert previous.events[-2:] == ["POWERBUTTON", "POWEROFF"], previous.events
    assert_sees_devices(boot, await unix_rpc.call("vm.get_instance", guest["id"]))


async def test_clone_boots_alongside_with_its_own_mac_and_disk(unix_rpc: Rpc, guest: dict[str, Any]) -> None:
    await ensure_booted(unix_rpc, guest["id"])
    original = await unix_rpc.call("vm.get_instance", guest["id"])
    clone = await unix_rpc.call("vm.clone", guest["id"], unique("e2eclone"))
    try:
        assert attributes(clone, "NIC")["mac"] != attributes(original, "NIC")["mac"]
        disk, original_disk = attributes(clone, "DISK"), attributes(original, "DISK")
        assert disk["path"] != original_disk["path"] and disk["serial"] != original_disk["serial"]
        # As in TrueNAS, a RAW file is not copied: the clone goes without it.
        assert not [d for d in clone["devices"] if d["attributes"]["dtype"] == "RAW"]
        await unix_rpc.call("vm.start", clone["id"])
        boot = await wait_ready(unix_rpc, clone["id"])
        assert await state(unix_rpc, guest["id"]) == "RUNNING"
        assert_sees_devices(boot, clone)
        assert original_disk["serial"] not in boot.serials
        # poweroff: at once, without asking the guest.
        await unix_rpc.call("vm.poweroff", clone["id"])
        assert await state(unix_rpc, clone["id"]) == "STOPPED"
        assert "POWERBUTTON" not in boots(await unix_rpc.call("vm.console_log", clone["id"]))[-1].events
        assert await state(unix_rpc, guest["id"]) == "RUNNING"
    finally:
        await unix_rpc.call("vm.delete", clone["id"], {"force": True, "zvols": True})


async def test_stop_is_a_graceful_acpi_shutdown(unix_rpc: Rpc, guest: dict[str, Any]) -> None:
    await ensure_booted(unix_rpc, guest["id"])
    await unix_rpc.call("core.subscribe", "vm.query")
    job, elapsed = await run_job(unix_rpc, "vm.stop", guest["id"], {"force": False})
    assert job["state"] == "SUCCESS", job
    assert await state(unix_rpc, guest["id"]) == "STOPPED"
    # Well before shutdown_timeout: the guest powered itself off (a forced stop would come after 90 s).
    assert elapsed < SHUTDOWN_TIMEOUT / 2, elapsed
    assert boots(await unix_rpc.call("vm.console_log", guest["id"]))[-1].events[-2:] == ["POWERBUTTON",
                                                                                         "POWEROFF"]
    if not any(e["fields"]["status"]["state"] == "STOPPED" for e in vm_events(unix_rpc, guest["id"])):
        await unix_rpc.next_event(lambda e: e.get("params", {}).get("id") == guest["id"]
                                  and e["params"]["fields"]["status"]["state"] == "STOPPED", timeout=5)
