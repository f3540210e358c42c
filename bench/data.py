"""bench data: disk import and RAM snapshots through the daemon, beside the raw tools in the same run.

- vm.device.import_disk of a qcow2 image (2 GiB of written data by default) into a new qcow2 volume, call to job
  end, beside `qemu-img convert` of the same image into a file of the same filesystem (throughput ratio).
- vm.snapshot.create with RAM and vm.snapshot.revert (force) of a running VM with 512 MiB, beside
  `virsh snapshot-create-as` / `snapshot-revert` of a domain of the same size, disk and RAM. libvirt 9.0 refuses
  those on UEFI (pflash) domains, which every daemon VM is, so the virsh domain boots SeaBIOS; both guests sit
  in their firmware (no boot medium), so neither has much of its RAM written. A second baseline is what virsh
  does on the daemon's own UEFI domain (a twin of it): an external RAM-only snapshot, and destroy + restore.
"""
from __future__ import annotations

import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import libvirt
from lxml import etree

from bench.common import RpcClient, Table, cleanup_libvirt, first_pong, fmt, quiet_libvirt, spawn_daemon, stop_process
from bench.vm import remove_domains, renamed_xml

URI = "qemu:///system"
GIB = 1 << 30
HEADERS = ["figure", "daemon", "raw tool", "ratio", "target", "note"]


def run_cmd(*argv: str) -> float:
    """Seconds a command takes (it must succeed)."""
    began = time.perf_counter()
    subprocess.run(argv, check=True, capture_output=True)
    return time.perf_counter() - began


def make_source(path: Path, size: int) -> None:
    """A qcow2 image with `size` bytes written (a pattern, so nothing is skipped as zero)."""
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), str(size)], check=True)
    chunk = 256 << 20  # qemu-io refuses requests of 2 GiB and more
    writes = [arg for offset in range(0, size, chunk)
              for arg in ("-c", f"write -P 0x5a {offset} {min(chunk, size - offset)}")]
    subprocess.run(["qemu-io", "-f", "qcow2", *writes, str(path)], check=True, capture_output=True)


async def job_seconds(client: RpcClient, method: str, *params: Any) -> tuple[float, Any]:
    """Seconds from the call to the job's end (legacy_jobs off: the call answers then), and the result."""
    began = time.perf_counter()
    result = await client.call(method, *params, timeout=1800)
    return time.perf_counter() - began, result


async def bench_import(client: RpcClient, storage: Path, pool: str, size: int, rounds: int, table: Table) -> None:
    source = storage / "source.qcow2"
    await asyncio.to_thread(make_source, source, size)
    ours: list[float] = []
    raw: list[float] = []

    async def daemon_side(i: int) -> None:
        await asyncio.to_thread(os.sync)
        seconds, _ = await job_seconds(client, "vm.device.import_disk",
                                       {"source": str(source), "zvol_name": f"{pool}/import{i}"})
        ours.append(seconds)
        await asyncio.to_thread(subprocess.run, ["virsh", "-q", "vol-delete", "--pool", pool, f"import{i}"],
                                check=True, capture_output=True)

    async def raw_side(i: int) -> None:
        target = storage / pool / f"raw{i}.qcow2"
        await asyncio.to_thread(os.sync)
        raw.append(await asyncio.to_thread(run_cmd, "qemu-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2",
                                           str(source), str(target)))
        target.unlink()
    for i in range(rounds):
        # Alternate which goes first, so that neither always finds the source in the page cache; each starts
        # with nothing dirty (os.sync), so that neither pays for writing back the other's copy.
        for side in (daemon_side, raw_side) if i % 2 == 0 else (raw_side, daemon_side):
            await side(i)
        print(f"  import round {i + 1}: daemon {ours[-1]:.2f} s, qemu-img {raw[-1]:.2f} s", file=sys.stderr)
    d, r = statistics.median(ours), statistics.median(raw)
    table.add(f"import {size / GIB:.1f} GiB qcow2, MiB/s", fmt(size / d / 2**20, 0), fmt(size / r / 2**20, 0),
              f"{r / d:.2f}", ">= 0.95", f"median of {rounds}; daemon {min(ours):.2f}-{max(ours):.2f} s, "
              f"qemu-img {min(raw):.2f}-{max(raw):.2f} s")


def uefi_twin_xml(daemon_xml: str, daemon_name: str, name: str, disk: str) -> str:
    """The daemon's own UEFI domain under another name, its volume disk replaced by a file of the same size."""
    root = etree.fromstring(renamed_xml(daemon_xml, daemon_name, name).encode())
    for element in root.iterfind("devices/disk[@type='volume']"):
        element.set("type", "file")
        source = element.find("source")
        assert source is not None
        for key in list(source.attrib):
            del source.attrib[key]
        source.set("file", disk)
    return etree.tostring(root, encoding="unicode")


def bios_domain_xml(name: str, disk: str, memory_mib: int) -> str:
    return f"""<domain type='qemu'><name>{name}</name><memory unit='MiB'>{memory_mib}</memory><vcpu>1</vcpu>
<os><type arch='x86_64' machine='q35'>hvm</type></os><features><acpi/></features>
<devices><disk type='file' device='disk'><driver name='qemu' type='qcow2'/><source file='{disk}'/>
<target dev='vda' bus='virtio'/></disk></devices></domain>"""


async def bench_snapshots(client: RpcClient, storage: Path, pool: str, memory: int, rounds: int,
                          table: Table) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{pool}/snapdisk", "zvol_volsize": 64 << 20,
            "type": "VIRTIO"}
    vm = await client.call("vm.create", {"name": f"snapbench{os.getpid()}", "memory": memory, "autostart": False,
                                         "devices": [{"attributes": disk}]})
    raw_disk, twin_disk, memory_file = storage / "bios.qcow2", storage / "twin.qcow2", storage / "twin.mem"
    for path in (raw_disk, twin_disk):
        subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(path), "64M"], check=True)
    raw_name, twin_name = f"mwbenchsnap{os.getpid()}", f"mwbenchtwin{os.getpid()}"
    conn = libvirt.open(URI)
    conn.defineXML(bios_domain_xml(raw_name, str(raw_disk), memory))
    daemon_name = f"{vm['id']}_{vm['name']}"
    conn.defineXML(uefi_twin_xml(conn.lookupByName(daemon_name).XMLDesc(0), daemon_name, twin_name, str(twin_disk)))
    times: dict[str, list[float]] = {k: [] for k in ("create", "revert", "vcreate", "vrevert", "ucreate", "urevert",
                                                     "held")}
    try:
        await client.call("vm.start", vm["id"])
        conn.lookupByName(raw_name).create()
        conn.lookupByName(twin_name).create()
        await asyncio.sleep(5)  # the firmwares settle
        for i in range(rounds):
            seconds, snap = await job_seconds(client, "vm.snapshot.create",
                                              {"vm": vm["id"], "name": f"s{i}", "memory": True})
            times["create"].append(seconds)
            times["held"].append(snap["held_ms"])
            times["revert"].append((await job_seconds(client, "vm.snapshot.revert", snap["id"], {"force": True}))[0])
            times["vcreate"].append(await asyncio.to_thread(run_cmd, "virsh", "-q", "snapshot-create-as", raw_name,
                                                            f"s{i}"))
            times["vrevert"].append(await asyncio.to_thread(run_cmd, "virsh", "-q", "snapshot-revert", raw_name,
                                                            f"s{i}", "--running"))
            # What libvirt 9.0 itself offers on a UEFI domain: an external RAM-only snapshot, revert by restore.
            times["ucreate"].append(await asyncio.to_thread(
                run_cmd, "virsh", "-q", "snapshot-create-as", twin_name, f"s{i}", "--no-metadata", "--memspec",
                f"file={memory_file},snapshot=external", "--diskspec", "vda,snapshot=no"))
            began = time.perf_counter()
            await asyncio.to_thread(run_cmd, "virsh", "-q", "destroy", twin_name)
            await asyncio.to_thread(run_cmd, "virsh", "-q", "restore", str(memory_file), "--running")
            times["urevert"].append(time.perf_counter() - began)
            memory_file.unlink()
            print(f"  snapshot round {i + 1}: daemon create {times['create'][-1]:.2f} s revert "
                  f"{times['revert'][-1]:.2f} s; virsh {times['vcreate'][-1]:.2f} s / {times['vrevert'][-1]:.2f} s",
                  file=sys.stderr)
    finally:
        await client.call("vm.delete", vm["id"], {"force": True, "zvols": True})
        dom = conn.lookupByName(raw_name)
        for snap in dom.listAllSnapshots():
            snap.delete(libvirt.VIR_DOMAIN_SNAPSHOT_DELETE_METADATA_ONLY)
        remove_domains(conn, [raw_name, twin_name])
        conn.close()
    for key, label in (("create", "snapshot create with RAM, s"), ("revert", "snapshot revert (running), s")):
        d = statistics.median(times[key])
        for prefix, what in (("v", "virsh on a SeaBIOS domain (internal savevm/loadvm)"),
                             ("u", "virsh on the same UEFI domain: external RAM only / destroy + restore")):
            r = statistics.median(times[prefix + key])
            table.add(f"{label} ({memory} MiB)", fmt(d, 2), fmt(r, 2), f"{d / r:.2f}", "<= 1.05",
                      f"median of {rounds}; {what}")
    table.add("  guest held (paused) by the daemon's create, ms", fmt(statistics.median(times["held"]), 0), "", "",
              "", "median; virsh pauses the guest for its whole create")


async def run(size: int = 2 * GIB, memory: int = 512, rounds: int = 3) -> None:
    """Import and snapshot figures beside their raw tools."""
    quiet_libvirt()
    began = time.perf_counter()
    table = Table("data: disk import and RAM snapshots, daemon vs raw tools", HEADERS)
    pool = f"mwbenchd{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="mwbench-data-", dir="/var/tmp") as tmp:
        os.chmod(tmp, 0o711)
        daemon = spawn_daemon(Path(tmp), pool)
        try:
            await first_pong(daemon.unix, daemon.process)
            storage = Path(tmp) / "storage"
            async with await RpcClient.open(daemon.unix) as client:
                await client.call("core.set_options", {"legacy_jobs": False})
                await bench_import(client, storage, pool, size, rounds, table)
                await bench_snapshots(client, storage, pool, memory, rounds, table)
        except Exception as e:
            table.note(f"aborted: {type(e).__name__}: {e}")
            if daemon.process.poll() is not None:
                table.note(f"daemon log:\n{daemon.log_tail()}")
        finally:
            stop_process(daemon.process)
            cleanup_libvirt(pool)
    table.note("import ratio is throughput (qemu-img time / daemon time); snapshot ratios are daemon time / virsh time")
    table.print()
    print(f"bench data took {time.perf_counter() - began:.1f} s")
