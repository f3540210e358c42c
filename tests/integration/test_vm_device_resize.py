"""vm.device.resize over the API: DISK volumes and RAW files grow (also under a running VM), never shrink."""
from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    by_dtype, expect_call_error, expect_invalid, media, storage, vm_with,
)
from tests.support import Daemon, Rpc, unique

pytestmark = pytest.mark.timeout(300)
MIB = 1 << 20


def virtual_size(path: str) -> int:
    info = json.loads(subprocess.run(["qemu-img", "info", "-U", "--output", "json", path], check=True,
                                     capture_output=True, text=True).stdout)
    return int(info["virtual-size"])


async def test_grow_disk_and_raw_of_a_stopped_vm(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('grow')}",
            "zvol_volsize": 4 * MIB}
    raw = {"dtype": "RAW", "path": str(storage / unique("grow")), "size": 4 * MIB}
    async with vm_with(unix_rpc, disk, raw) as vm:
        await unix_rpc.call("core.subscribe", "vm.device.query")
        (d,), (r,) = by_dtype(vm, "DISK"), by_dtype(vm, "RAW")
        await unix_rpc.call("vm.device.resize", d["id"], {"size": 8 * MIB})
        assert virtual_size(d["attributes"]["path"]) == 8 * MIB
        grown = await unix_rpc.call("vm.device.resize", r["id"], {"size": 6 * MIB})
        assert grown["attributes"]["size"] == 6 * MIB and os.path.getsize(r["attributes"]["path"]) == 6 * MIB
        await unix_rpc.next_event(lambda e: e["params"].get("collection") == "vm.device.query"
                                  and e["params"]["id"] == r["id"])
        # The stored size followed: other updates of the device still work.
        await unix_rpc.call("vm.device.update", r["id"], {"attributes": {"iotype": "NATIVE"}})


async def test_refusals_change_nothing(unix_rpc: Rpc, daemon: Daemon, storage: Path, media: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('grow')}",
            "zvol_volsize": 4 * MIB}
    async with vm_with(unix_rpc, disk, {"dtype": "CDROM", "path": str(media)}) as vm:
        (d,), (c,) = by_dtype(vm, "DISK"), by_dtype(vm, "CDROM")
        path = d["attributes"]["path"]
        error = await expect_call_error(unix_rpc, "vm.device.resize", d["id"], {"size": 2 * MIB})
        assert error.errno == 22 and "shrinking" in str(error.reason)
        error = await expect_call_error(unix_rpc, "vm.device.resize", d["id"], {"size": 4 * MIB})
        assert "already" in str(error.reason)
        error = await expect_call_error(unix_rpc, "vm.device.resize", d["id"], {"size": 1 << 60})
        assert error.errno == 28, error.error  # ENOSPC
        error = await expect_call_error(unix_rpc, "vm.device.resize", c["id"], {"size": 8 * MIB})
        assert "only DISK and RAW" in str(error.reason)
        assert await expect_invalid(unix_rpc, "vm.device.resize", d["id"], {"size": 8 * MIB + 1}) == \
            [("options.size", 22)]
        assert await expect_invalid(unix_rpc, "vm.device.resize", d["id"], {})
        assert virtual_size(path) == 4 * MIB


async def test_grow_under_a_running_guest(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('grow')}",
            "zvol_volsize": 4 * MIB, "type": "VIRTIO"}
    raw = {"dtype": "RAW", "path": str(storage / unique("grow")), "size": 4 * MIB}
    async with vm_with(unix_rpc, disk, raw) as vm:
        (d,), (r,) = by_dtype(vm, "DISK"), by_dtype(vm, "RAW")
        await unix_rpc.call("vm.start", vm["id"])
        try:
            await unix_rpc.call("vm.device.resize", d["id"], {"size": 12 * MIB})
            await unix_rpc.call("vm.device.resize", r["id"], {"size": 10 * MIB})
            assert virtual_size(d["attributes"]["path"]) == 12 * MIB
            assert os.path.getsize(r["attributes"]["path"]) == 10 * MIB
        finally:
            await unix_rpc.call("vm.poweroff", vm["id"])


async def test_grow_a_qcow2_disk_with_snapshots(unix_rpc: Rpc, daemon: Daemon) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('grow')}",
            "zvol_volsize": 4 * MIB, "type": "VIRTIO"}
    async with vm_with(unix_rpc, disk) as vm:
        (d,) = by_dtype(vm, "DISK")
        info = json.loads(subprocess.run(["qemu-img", "info", "--output", "json", d["attributes"]["path"]],
                                         check=True, capture_output=True, text=True).stdout)
        assert info["format-specific"]["data"]["compat"] == "1.1"
        await unix_rpc.call("core.set_options", {"legacy_jobs": False})
        await unix_rpc.call("vm.snapshot.create", {"vm": vm["id"], "name": "before"})
        await unix_rpc.call("vm.device.resize", d["id"], {"size": 8 * MIB})
        await unix_rpc.call("vm.start", vm["id"])
        try:
            await unix_rpc.call("vm.device.resize", d["id"], {"size": 12 * MIB})
        finally:
            await unix_rpc.call("vm.poweroff", vm["id"])
        assert virtual_size(d["attributes"]["path"]) == 12 * MIB
