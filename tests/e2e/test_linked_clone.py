"""A linked clone of a template made from the real guest: it boots, counts on from the template's data disk, and
writes only its own overlay (the template's volume stays byte for byte as it was)."""
from __future__ import annotations

import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import guest_vm, remove_domain
from tests.e2e.test_data import MIB, wait_tick
from tests.integration.test_vm_template import chain, digest
from tests.support import Daemon, Rpc, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]


def data_disk(vm: dict[str, Any]) -> dict[str, Any]:
    return next(d for d in vm["devices"] if d["attributes"]["dtype"] == "DISK")


def write_marker(path: str, value: int, tmp: Path) -> None:
    """Put the guest's data-disk marker ("MWDATA <n>", tests/guest/rootfs/etc/init.d/data) in the first sector."""
    sector = tmp / "sector"
    sector.write_bytes(f"MWDATA {value}\n".encode().ljust(512, b"\0"))
    subprocess.run(["qemu-io", "-f", "qcow2", "-c", f"write -s {sector} 0 512", path], check=True,
                   capture_output=True)


async def test_linked_clone_boots_and_leaves_the_template_unchanged(unix_rpc: Rpc, daemon: Daemon, daemon_iso: str,
                                                                     tmp_path: Path) -> None:
    name = unique("tpl")
    disk = {"attributes": {"dtype": "DISK", "type": "VIRTIO", "create_zvol": True,
                           "zvol_name": f"{daemon.pool}/{name}", "zvol_volsize": 64 * MIB, "serial": "data0"},
            "order": 1001}
    vm = await unix_rpc.call("vm.create", guest_vm(name, daemon_iso, devices=[disk]))
    clone: dict[str, Any] | None = None
    try:
        base = data_disk(vm)["attributes"]["path"]
        write_marker(base, 40, tmp_path)
        await unix_rpc.call("vm.update", vm["id"], {"template": True})
        before = digest(base)

        clone = await unix_rpc.call("vm.clone", vm["id"], unique("linked"), {"linked": True})
        overlay = data_disk(clone)["attributes"]["path"]
        top, backing = chain(overlay)
        assert top["format"] == "qcow2" and top["backing-filename"] == base and backing["filename"] == base
        assert top["backing-filename-format"] == "qcow2" and backing["format"] == "qcow2"
        # A clone's disks get new serials; the guest counts on disks whose serial starts with "data".
        await unix_rpc.call("vm.device.update", data_disk(clone)["id"], {"attributes": {"serial": "data1"}})

        await unix_rpc.call("vm.start", clone["id"])
        # The first ticks count on from the template's marker, read through the overlay (a blank disk starts at 1;
        # a tick line may be lost among early boot messages); the next ones read the clone's own writes.
        first, _ = await wait_tick(unix_rpc, clone["id"], lambda k: True, "the clone's first tick")
        assert 40 < first.counter <= 42 and first.size == 64 * MIB, first
        await wait_tick(unix_rpc, clone["id"], lambda k: k.counter >= 43, "the clone writing its marker")
        await unix_rpc.call("vm.poweroff", clone["id"])
        assert digest(base) == before
        assert len(chain(overlay)) == 2
    finally:
        if clone is not None:
            await unix_rpc.call("vm.delete", clone["id"], {"force": True, "zvols": True})
            remove_domain(f"{clone['id']}_{clone['name']}")
        await unix_rpc.call("vm.delete", vm["id"], {"force": True, "zvols": True})
        remove_domain(f"{vm['id']}_{name}")
