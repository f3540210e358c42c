"""vm.device.import_disk/export_disk/virtual_size over the API: foreign images into pool volumes and back, with
qemu-img's percentages, and nothing left behind by an abort or a refusal."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.integration.test_vm_device_fixtures import (  # noqa: F401 (fixtures)
    bridge, by_dtype, expect_call_error, expect_invalid, storage, vm_with, volumes,
)
from tests.ova_maker import make_ova
from tests.support import Daemon, Rpc, RpcError, unique

pytestmark = pytest.mark.timeout(300)
MIB = 1 << 20


def make_image(path: Path, fmt: str, size: int = 8 * MIB, byte: int = 0x5A) -> Path:
    """An image of a format whose first MiB is `byte`."""
    subprocess.run(["qemu-img", "create", "-f", fmt, str(path), str(size)], check=True, capture_output=True)
    subprocess.run(["qemu-io", "-f", fmt, "-c", f"write -P {byte} 0 1M", str(path)], check=True, capture_output=True)
    return path


def holds(path: str, fmt: str, byte: int = 0x5A) -> bool:
    done = subprocess.run(["qemu-io", "-r", "-U", "-f", fmt, "-c", f"read -P {byte} 0 1M", path],
                          capture_output=True, text=True)
    return done.returncode == 0 and "Pattern verification failed" not in done.stdout


async def job(rpc: Rpc, method: str, *params: Any, timeout: float = 120) -> Any:
    await rpc.call("core.set_options", {"legacy_jobs": False})
    try:
        return await rpc.call(method, *params, timeout=timeout)
    finally:
        await rpc.call("core.set_options", {"legacy_jobs": True})


@pytest.mark.parametrize("fmt", ["qcow2", "vmdk", "vhdx", "vdi", "raw"])
async def test_import_each_format(unix_rpc: Rpc, daemon: Daemon, storage: Path, fmt: str) -> None:
    source = make_image(storage / f"{unique('img')}.{fmt}", fmt)
    name = unique("imp")
    await unix_rpc.call("core.subscribe", "core.get_jobs")
    result = await job(unix_rpc, "vm.device.import_disk", {"source": str(source), "zvol_name": f"{daemon.pool}/{name}"})
    assert result["zvol_name"] == f"{daemon.pool}/{name}" and result["format"] == "qcow2" and result["size"] == 8 * MIB
    assert result["source"]["format"] == fmt and holds(result["path"], "qcow2")
    percents = [e["params"]["fields"]["progress"]["percent"] for e in unix_rpc.events
                if e.get("params", {}).get("collection") == "core.get_jobs" and "fields" in e["params"]
                and e["params"]["fields"]["method"] == "vm.device.import_disk"]
    assert percents and percents[-1] == 100
    jobs = await unix_rpc.call("core.get_jobs", [["method", "=", "vm.device.import_disk"]], {"order_by": ["-id"]})
    assert "copied with qemu-img: " in (jobs[0]["logs_excerpt"] or ""), jobs[0]["logs_excerpt"]
    # The volume is an ordinary DISK volume.
    async with vm_with(unix_rpc, {"dtype": "DISK", "zvol_name": result["zvol_name"]}) as vm:
        assert by_dtype(vm, "DISK")[0]["attributes"]["format"] == "qcow2"
    assert await unix_rpc.call("vm.device.virtual_size", {"path": str(source)}) == 8 * MIB


async def test_import_refusals_leave_nothing(unix_rpc: Rpc, daemon: Daemon, storage: Path, tmp_path: Path) -> None:
    base = make_image(storage / f"{unique('base')}.qcow2", "qcow2")
    overlay = storage / f"{unique('overlay')}.qcow2"
    subprocess.run(["qemu-img", "create", "-f", "qcow2", "-b", str(base), "-F", "qcow2", str(overlay)], check=True,
                   capture_output=True)
    outside = make_image(tmp_path / "outside.qcow2", "qcow2")
    before = volumes(daemon.pool)
    for source, words in ((overlay, "overlay"), (outside, "storage roots"), (storage / "missing", "does not exist")):
        with pytest.raises(RpcError) as e:
            await job(unix_rpc, "vm.device.import_disk", {"source": str(source), "zvol_name": f"{daemon.pool}/x1"})
        assert words in str(e.value.reason), e.value.error
    with pytest.raises(RpcError) as e:
        await job(unix_rpc, "vm.device.import_disk", {"source": str(base), "zvol_name": "nopool-here/x1"})
    assert e.value.errno == 2
    taken = unique("taken")
    await job(unix_rpc, "vm.device.import_disk", {"source": str(base), "zvol_name": f"{daemon.pool}/{taken}"})
    with pytest.raises(RpcError) as e:
        await job(unix_rpc, "vm.device.import_disk", {"source": str(base), "zvol_name": f"{daemon.pool}/{taken}"})
    assert e.value.errno == 17
    assert await expect_invalid(unix_rpc, "vm.device.import_disk", {"source": str(base)}) == [("data.zvol_name", 22)]
    assert volumes(daemon.pool) == before | {taken}
    with pytest.raises(RpcError):
        await unix_rpc.call("vm.device.virtual_size", {"path": str(outside)})


async def test_abort_removes_the_new_volume(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    source = storage / f"{unique('big')}.raw"
    subprocess.run(["qemu-img", "create", "-f", "raw", str(source), "1G"], check=True, capture_output=True)
    subprocess.run(["qemu-io", "-f", "raw", "-c", "write -P 7 0 1G", str(source)], check=True, capture_output=True)
    before = volumes(daemon.pool)
    job_id = await unix_rpc.call("vm.device.import_disk", {"source": str(source), "zvol_name": f"{daemon.pool}/big"})
    for _ in range(200):
        (state,) = await unix_rpc.call("core.get_jobs", [["id", "=", job_id]])
        if state["progress"]["percent"] > 0 or state["state"] != "RUNNING":
            break
        await asyncio.sleep(0.05)
    await unix_rpc.call("core.job_abort", job_id)
    for _ in range(100):
        (state,) = await unix_rpc.call("core.get_jobs", [["id", "=", job_id]])
        if state["state"] in ("ABORTED", "SUCCESS", "FAILED"):
            break
        await asyncio.sleep(0.1)
    assert state["state"] == "ABORTED", state
    assert volumes(daemon.pool) == before


async def test_export_disk(unix_rpc: Rpc, daemon: Daemon, storage: Path) -> None:
    source = make_image(storage / f"{unique('src')}.qcow2", "qcow2")
    name = unique("exp")
    await job(unix_rpc, "vm.device.import_disk", {"source": str(source), "zvol_name": f"{daemon.pool}/{name}"})
    async with vm_with(unix_rpc, {"dtype": "DISK", "zvol_name": f"{daemon.pool}/{name}"}) as vm:
        (disk,) = by_dtype(vm, "DISK")
        for fmt in ("raw", "qcow2"):
            target = storage / f"{unique('out')}.{fmt}"
            assert await job(unix_rpc, "vm.device.export_disk", disk["id"], {"path": str(target), "format": fmt}) == \
                str(target)
            assert holds(str(target), fmt)
            with pytest.raises(RpcError) as e:
                await job(unix_rpc, "vm.device.export_disk", disk["id"], {"path": str(target), "format": fmt})
            assert e.value.errno == 17
        await unix_rpc.call("vm.start", vm["id"])
        try:
            with pytest.raises(RpcError) as e:
                await job(unix_rpc, "vm.device.export_disk", disk["id"], {"path": str(storage / unique("x"))})
            assert e.value.errno == 16
        finally:
            await unix_rpc.call("vm.poweroff", vm["id"])


async def test_import_ova(unix_rpc: Rpc, daemon: Daemon, storage: Path, bridge: str) -> None:
    disk = make_image(storage / f"{unique('ovadisk')}.qcow2", "qcow2")
    archive = make_ova(storage, unique("ova"), [disk], vcpus=2, memory_mib=96, nics=["E1000", "VmxNet3"],
                       extras=[("Sound card", "35")])
    name = unique("fromova")
    result = await job(unix_rpc, "vm.import_ova", {"path": str(archive), "name": name, "nic_attach": bridge})
    vm = result["vm"]
    try:
        assert (vm["name"], vm["vcpus"], vm["memory"]) == (name, 2, 96)
        (d,) = by_dtype(vm, "DISK")
        assert d["attributes"]["format"] == "qcow2" and holds(d["attributes"]["path"], "qcow2")
        assert [n["attributes"]["type"] for n in by_dtype(vm, "NIC")] == ["E1000", "E1000"]
        assert len(result["unknown"]) == 1 and "Sound card" in result["unknown"][0]
        # A name taken, a file that is no OVA: refused before anything is made.
        before = volumes(daemon.pool)
        for data in ({"path": str(archive), "name": name}, {"path": str(disk)}):
            with pytest.raises(RpcError):
                await job(unix_rpc, "vm.import_ova", data)
        assert volumes(daemon.pool) == before
        assert not list(storage.glob(".ova-import-*"))
    finally:
        await unix_rpc.call("vm.delete", vm["id"], {"zvols": True})
