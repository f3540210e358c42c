"""Templates and linked clones over the API on real libvirt and qcow2 volumes: conversion, the refusals that keep a
template's volumes whole, overlays and their backing chain, delete rules. What a guest sees is in tests/e2e."""
from __future__ import annotations

import hashlib
import json
import os
import stat
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    by_dtype, expect_call_error, expect_invalid, media, storage, vm_with,
)
from tests.integration.test_vm_snapshot import disk_path, job, pattern, write
from tests.support import Daemon, Rpc, RpcError, unique

pytestmark = pytest.mark.timeout(300)


def digest(path: str) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def chain(path: str) -> list[dict[str, Any]]:
    """qemu-img's view of an image and its backing files, top first."""
    out = subprocess.run(["qemu-img", "info", "-U", "--backing-chain", "--output", "json", path], check=True,
                         capture_output=True, text=True).stdout
    return list(json.loads(out))


def pool_volumes(daemon: Daemon) -> set[str]:
    out = subprocess.run(["virsh", "-c", "qemu:///system", "vol-list", daemon.pool], check=True,
                         capture_output=True, text=True).stdout
    return {line.split()[0] for line in out.splitlines()[2:] if line.strip()}


async def make_template(rpc: Rpc, vm_id: int) -> dict[str, Any]:
    entry = await rpc.call("vm.update", vm_id, {"template": True})
    assert entry["template"] and entry["status"]["state"] == "STOPPED"
    return dict(entry)


async def test_linked_clone_of_a_template(unix_rpc: Rpc, daemon: Daemon, media: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('tpl')}",
            "zvol_volsize": 4 << 20, "type": "VIRTIO"}
    cdrom = {"dtype": "CDROM", "path": str(media)}
    async with vm_with(unix_rpc, disk, cdrom) as vm:
        base = disk_path(vm)
        write(base, 3)
        template = await make_template(unix_rpc, vm["id"])
        assert stat.S_IMODE(os.stat(base).st_mode) == 0o444
        assert template["cloned_from"] is None and not template["linked_clone"]
        before = digest(base)

        clone = await unix_rpc.call("vm.clone", vm["id"], unique("linked"), {"linked": True})
        try:
            assert clone["linked_clone"] and clone["cloned_from"] == vm["id"] and not clone["template"]
            overlay = disk_path(clone)
            assert by_dtype(clone, "DISK")[0]["attributes"]["format"] == "qcow2"
            assert by_dtype(clone, "CDROM")[0]["attributes"]["path"] == str(media)
            top, backing = chain(overlay)
            assert top["format"] == "qcow2" and top["backing-filename"] == base
            assert top["backing-filename-format"] == "qcow2" and backing["filename"] == base
            assert top["virtual-size"] == 4 << 20
            # The clone reads the template's data through the overlay; what it writes stays in the overlay.
            assert pattern(overlay, 3)
            write(overlay, 9)
            assert pattern(overlay, 9) and pattern(base, 3) and digest(base) == before
            # libvirt follows the chain: the clone runs with the template's volume as its read-only backing file.
            await unix_rpc.call("vm.start", clone["id"])
            assert (await unix_rpc.call("vm.status", clone["id"]))["state"] == "RUNNING"
            await unix_rpc.call("vm.poweroff", clone["id"])
            assert digest(base) == before

            # Rules that keep the bases whole while a clone needs them.
            e = await expect_call_error(unix_rpc, "vm.delete", vm["id"], {"zvols": True})
            assert e.errno == 16 and clone["name"] in e.reason, e.error
            assert await expect_invalid(unix_rpc, "vm.update", vm["id"], {"template": False}) == [
                ("vm_update.template", 16)]
            e = await expect_call_error(unix_rpc, "vm.device.delete", by_dtype(vm, "DISK")[0]["id"], {"zvol": True})
            assert e.errno == 16 and clone["name"] in e.reason and os.path.exists(base), e.error
            full = await unix_rpc.call("vm.clone", vm["id"])
            try:
                assert full["cloned_from"] == vm["id"] and not full["linked_clone"] and not full["template"]
                assert len(chain(disk_path(full))) == 1 and pattern(disk_path(full), 3)
            finally:
                await unix_rpc.call("vm.delete", full["id"], {"zvols": True})
        finally:
            await unix_rpc.call("vm.delete", clone["id"], {"zvols": True})
        # Deleting the linked clone removed its overlay only.
        assert not os.path.exists(overlay) and digest(base) == before
        assert (await unix_rpc.call("vm.get_instance", vm["id"]))["template"]
        back = await unix_rpc.call("vm.update", vm["id"], {"template": False})
        assert not back["template"] and stat.S_IMODE(os.stat(base).st_mode) == 0o600


async def test_what_a_template_refuses(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{unique('tpl')}",
            "zvol_volsize": 1 << 20, "type": "VIRTIO"}
    async with vm_with(unix_rpc, disk) as vm:
        vm_id = vm["id"]
        # A plain VM has no linked clones; nothing is made.
        volumes = pool_volumes(daemon)
        e = await expect_call_error(unix_rpc, "vm.clone", vm_id, None, {"linked": True})
        assert e.errno == 22 and "not a template" in e.reason, e.error
        assert await expect_invalid(unix_rpc, "vm.clone", vm_id, None, {"linked": True, "bogus": 1})
        # Conversion needs a stopped VM without snapshots.
        await unix_rpc.call("vm.start", vm_id)
        try:
            assert await expect_invalid(unix_rpc, "vm.update", vm_id, {"template": True}) == [
                ("vm_update.template", 16)]
        finally:
            await unix_rpc.call("vm.poweroff", vm_id)
        snap = await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "s"})
        with pytest.raises(RpcError) as raised:
            await unix_rpc.call("vm.update", vm_id, {"template": True})
        assert raised.value.code == -32602 and "snapshots" in json.dumps(raised.value.error)
        await job(unix_rpc, "vm.snapshot.delete", snap["id"])
        assert not (await unix_rpc.call("vm.get_instance", vm_id))["template"]

        await make_template(unix_rpc, vm_id)
        e = await expect_call_error(unix_rpc, "vm.start", vm_id)
        assert e.errno == 22 and "template" in e.reason, e.error
        with pytest.raises(RpcError) as raised:
            await job(unix_rpc, "vm.snapshot.create", {"vm": vm_id, "name": "t"})
        assert "is a template" in json.dumps(raised.value.error)
        device = by_dtype(vm, "DISK")[0]["id"]
        e = await expect_call_error(unix_rpc, "vm.device.resize", device, {"size": 2 << 20})
        assert e.errno == 22 and "template" in e.reason, e.error
        assert (await unix_rpc.call("vm.get_instance", vm_id))["status"]["state"] == "STOPPED"

        # A RAW file cannot be overlaid: the linked clone is refused and leaves no volume behind.
        raw = {"dtype": "RAW", "path": str(storage / unique("raw")), "size": 1 << 20}
        await unix_rpc.call("vm.device.create", {"vm": vm_id, "attributes": raw})
        e = await expect_call_error(unix_rpc, "vm.clone", vm_id, None, {"linked": True})
        assert e.errno == 22 and "RAW disk" in e.reason, e.error
        assert pool_volumes(daemon) == volumes
        assert len(await unix_rpc.call("vm.query", [["cloned_from", "=", vm_id]])) == 0
