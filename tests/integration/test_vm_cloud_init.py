"""CLOUD_INIT devices over the API: the NoCloud seed ISO built at start when its data changed, attached read-only,
hidden from readers, removed with the device or the VM; refusals change nothing."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    by_dtype, expect_invalid, storage, virsh, vm_with,
)
from tests.support import Rpc

pytestmark = pytest.mark.timeout(300)
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIMw6 test@example"


def seed_files(iso: str, tmp: Path) -> dict[str, str]:
    """The files of a seed ISO and its volume label (as "label")."""
    out = tmp / "seed"
    subprocess.run(["xorriso", "-osirrox", "on", "-indev", iso, "-extract", "/", str(out)], check=True,
                   capture_output=True)
    label = subprocess.run(["xorriso", "-indev", iso, "-pvd_info"], check=True, capture_output=True,
                           text=True).stdout
    files = {p.name: p.read_text() for p in out.iterdir()}
    files["label"] = next(line.split(":", 1)[1].strip() for line in label.splitlines() if line.startswith("Volume Id"))
    subprocess.run(["chmod", "-R", "u+w", str(out)], check=True)
    subprocess.run(["rm", "-rf", str(out)], check=True)
    return files


async def test_seed_built_at_start_and_removed(unix_rpc: Rpc, storage: Path, tmp_path: Path) -> None:
    ci = {"dtype": "CLOUD_INIT", "hostname": "guest-one", "ssh_authorized_keys": [KEY], "password": "pw-1"}
    async with vm_with(unix_rpc, ci) as vm:
        (device,) = by_dtype(vm, "CLOUD_INIT")
        seed = device["attributes"]["seed"]
        assert seed.startswith(str(storage)) and not os.path.exists(seed)
        await unix_rpc.call("vm.start", vm["id"])
        try:
            files = seed_files(seed, tmp_path)
            assert files["label"] == "cidata"
            assert files["user-data"].startswith("#cloud-config") and KEY in files["user-data"]
            assert "pw-1" in files["user-data"] and "local-hostname: guest-one" in files["meta-data"]
            disks = virsh("dumpxml", f"{vm['id']}_{vm['name']}")
            assert seed in disks and "<readonly/>" in disks
        finally:
            await unix_rpc.call("vm.poweroff", vm["id"])
        before = os.stat(seed).st_mtime_ns
        await unix_rpc.call("vm.start", vm["id"])
        await unix_rpc.call("vm.poweroff", vm["id"])
        assert os.stat(seed).st_mtime_ns == before  # same data: not rebuilt
        await unix_rpc.call("vm.device.update", device["id"], {"attributes": {
            "password": None, "ssh_authorized_keys": [], "user_data": "#cloud-config\nguest_echo: two\n"}})
        await unix_rpc.call("vm.start", vm["id"])
        await unix_rpc.call("vm.poweroff", vm["id"])
        assert "guest_echo: two" in seed_files(seed, tmp_path)["user-data"]
        await unix_rpc.call("vm.device.delete", device["id"])
        assert not os.path.exists(seed) and not os.path.exists(f"{seed}.sum")
    async with vm_with(unix_rpc, ci) as vm:
        seed = by_dtype(vm, "CLOUD_INIT")[0]["attributes"]["seed"]
        await unix_rpc.call("vm.start", vm["id"])
        await unix_rpc.call("vm.poweroff", vm["id"])
        assert os.path.exists(seed)
        await unix_rpc.call("vm.delete", vm["id"])
        assert not os.path.exists(seed)


async def test_refusals(unix_rpc: Rpc) -> None:
    async with vm_with(unix_rpc, {"dtype": "CLOUD_INIT", "hostname": "h"}) as vm:
        cases = [
            ({"user_data": "#cloud-config\n", "password": "x"}, "vm_device_create.attributes.user_data"),
            ({"seed": "/etc/passwd"}, "vm_device_create.attributes.seed"),
            ({"meta_data": "- a list"}, "vm_device_create.attributes.meta_data"),
            ({}, "vm_device_create.attributes.dtype"),
        ]
        for attributes, where in cases:
            errors = await expect_invalid(unix_rpc, "vm.device.create", {"vm": vm["id"], "attributes": {
                "dtype": "CLOUD_INIT", **attributes}})
            assert where in [a for a, _ in errors], (attributes, errors)
        assert len(by_dtype(await unix_rpc.call("vm.get_instance", vm["id"]), "CLOUD_INIT")) == 1


async def test_seed_goes_when_vm_update_drops_the_device(unix_rpc: Rpc) -> None:
    async with vm_with(unix_rpc, {"dtype": "CLOUD_INIT", "hostname": "h"}) as vm:
        seed = by_dtype(vm, "CLOUD_INIT")[0]["attributes"]["seed"]
        await unix_rpc.call("vm.start", vm["id"])
        await unix_rpc.call("vm.poweroff", vm["id"])
        assert os.path.exists(seed)
        await unix_rpc.call("vm.update", vm["id"], {"devices": []})
        assert not os.path.exists(seed) and not os.path.exists(f"{seed}.sum")
