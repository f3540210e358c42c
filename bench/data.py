"""bench data: disk import and RAM snapshots through the daemon, beside the raw tools in the same run.

Import (a qcow2 image with 2 GiB written, by default), twice: with the source in the page cache (read through
before each side) and out of it (its pages dropped before each side, nothing else); before each side the page
cache holds nothing dirty (sync), so that neither pays for writing back the other's copy.
- daemon: vm.device.import_disk into a new qcow2 volume of the pool, from the call to the job's end (inspecting
  the source, libvirt making the volume, `qemu-img convert -p -n` into it); the volume is deleted after, untimed.
- raw: `qemu-img convert -p -f qcow2 -O qcow2` of the same image into a new file of the same directory; the file
  is deleted after, untimed.

Snapshots of a running guest with 512 MiB of RAM (all guests sit in their firmware, no boot medium, so little of
their RAM is written); each side deletes its snapshot after, untimed, so no side accumulates files.
- daemon: vm.snapshot.create with memory (pause, qcow2 internal snapshot of the disk in one QMP transaction,
  NVRAM copy, RAM saved by libvirt as an external memory-only snapshot, resume), then vm.snapshot.revert with
  force (power off, `qemu-img snapshot -a`, NVRAM copy back, restore of the saved RAM), each call to job end.
- virsh on a SeaBIOS domain of the same size and disk: `snapshot-create-as` / `snapshot-revert --running`, QEMU's
  internal snapshots (savevm writes the RAM into the qcow2); libvirt 9.0 refuses them on the UEFI (pflash) domains
  the daemon makes. Its revert of the running domain starts a new QEMU process as well (loading the snapshot).
- virsh on a twin of the daemon's own UEFI domain: what libvirt 9.0 offers there, an external RAM-only snapshot
  (no disk snapshot) and, as revert, `destroy` + `restore` (a new QEMU process, as the daemon's revert).
Every revert ends a QEMU process, and libvirt returns only once that process is reaped: on a host whose init reaps
orphans late (some container and micro-VM inits), that wait dominates all three revert figures alike.

Fairness: round 0 of each figure warms up and is not counted (the first writes of a few GiB, whoever makes them,
can land in memory the host has to provide afresh); the sides take turns going first; figures are medians with
their range. Rows "of which" are the steps the daemon's jobs logged, with what each took (medians). Each virsh
call is a new process, as a user or script runs it.
"""
from __future__ import annotations

import asyncio
import os
import re
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
STEP = re.compile(r"^(.+?)(?::| in) (\d+) ms\b", re.M)


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


async def last_job_log(client: RpcClient, method: str) -> str:
    """The log of the daemon's last job of a method: its steps and what each took."""
    jobs = await client.call("core.get_jobs", [["method", "=", method]], {"order_by": ["-id"], "limit": 1})
    return str(jobs[0]["logs_excerpt"] or "") if jobs else ""


def job_steps(log: str) -> dict[str, float]:
    """Milliseconds per step of a job log ("disk snapshot: 15 ms", "restored the saved guest in 900 ms"), a
    snapshot's tag left out of the step's name."""
    return {re.sub(r" mw-[0-9a-f]+", "", m[1]): float(m[2]) for m in STEP.finditer(log)}


def add_steps(table: Table, rounds: list[dict[str, float]]) -> None:
    """Rows with the median time of each step the daemon's jobs logged, round 0 (the warm-up) left out."""
    for step in rounds[-1] if rounds else {}:
        ms = [steps[step] for steps in rounds[1:] if step in steps]
        if ms:
            table.add(f"  of which {step}, ms", fmt(statistics.median(ms), 0), "", "", "",
                      f"median, {min(ms):.0f}-{max(ms):.0f}")


def settle(source: Path, cold: bool) -> None:
    """The same page-cache state before each side: nothing dirty (so that no side pays for writing back the
    other's copy), and the source image either out of the page cache (cold) or read into it (cached)."""
    os.sync()
    with open(source, "rb") as f:
        if cold:
            # Only the source leaves the cache (clean pages, hence the sync first): dropping every cache would
            # also evict the daemon's and libvirtd's code, which a running service keeps in memory.
            os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)
        else:
            while f.read(8 << 20):
                pass


def spread(values: list[float]) -> str:
    return f"{min(values):.2f}-{max(values):.2f}"


async def bench_import(client: RpcClient, storage: Path, pool: str, size: int, rounds: int, table: Table) -> None:
    source = storage / "source.qcow2"
    await asyncio.to_thread(make_source, source, size)
    for cold in (False, True):
        ours: list[float] = []
        raw: list[float] = []
        steps: list[dict[str, float]] = []

        async def daemon_side(i: int) -> float:
            seconds, _ = await job_seconds(client, "vm.device.import_disk",
                                           {"source": str(source), "zvol_name": f"{pool}/import{i}"})
            steps.append(job_steps(await last_job_log(client, "vm.device.import_disk")))
            await asyncio.to_thread(subprocess.run, ["virsh", "-q", "vol-delete", "--pool", pool, f"import{i}"],
                                    check=True, capture_output=True)
            return seconds

        async def raw_side(i: int) -> float:
            target = storage / pool / f"raw{i}.qcow2"
            seconds = await asyncio.to_thread(run_cmd, "qemu-img", "convert", "-p", "-f", "qcow2", "-O", "qcow2",
                                              str(source), str(target))
            target.unlink()
            return seconds
        # Round 0 warms up and is not counted: the first writes of a few GiB after a while land in memory the
        # host has not touched lately (on a VM host, memory given back to the hypervisor), whoever makes them.
        for i in range(rounds + 1):
            times: dict[Any, float] = {}
            for side in (daemon_side, raw_side) if i % 2 == 0 else (raw_side, daemon_side):
                await asyncio.to_thread(settle, source, cold)
                times[side] = await side(i)
            print(f"  import round {i}{' (warm-up)' if i == 0 else ''}, {'cold' if cold else 'cached'}: "
                  f"daemon {times[daemon_side]:.2f} s, qemu-img {times[raw_side]:.2f} s"
                  f"{' (daemon first)' if i % 2 == 0 else ' (qemu-img first)'}", file=sys.stderr)
            if i:
                ours.append(times[daemon_side])
                raw.append(times[raw_side])
        d, r = statistics.median(ours), statistics.median(raw)
        state = "source out of the page cache" if cold else "source in the page cache"
        table.add(f"import {size / GIB:.1f} GiB qcow2, MiB/s ({'cold' if cold else 'cached'})",
                  fmt(size / d / 2**20, 0), fmt(size / r / 2**20, 0), f"{r / d:.2f}", ">= 0.95",
                  f"median of {rounds}, {state}; daemon {spread(ours)} s, qemu-img {spread(raw)} s")
        add_steps(table, steps)


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
    steps: dict[str, list[dict[str, float]]] = {"create": [], "revert": []}

    async def daemon_side(i: int) -> None:
        seconds, snap = await job_seconds(client, "vm.snapshot.create", {"vm": vm["id"], "name": f"s{i}",
                                                                         "memory": True})
        steps["create"].append(job_steps(await last_job_log(client, "vm.snapshot.create")))
        await asyncio.to_thread(os.sync)
        record(i, "create", seconds)
        record(i, "held", snap["held_ms"])
        record(i, "revert", (await job_seconds(client, "vm.snapshot.revert", snap["id"], {"force": True}))[0])
        steps["revert"].append(job_steps(await last_job_log(client, "vm.snapshot.revert")))
        await client.call("vm.snapshot.delete", snap["id"])

    async def bios_side(i: int) -> None:
        record(i, "vcreate", await asyncio.to_thread(run_cmd, "virsh", "-q", "snapshot-create-as", raw_name, f"s{i}"))
        await asyncio.to_thread(os.sync)
        record(i, "vrevert", await asyncio.to_thread(run_cmd, "virsh", "-q", "snapshot-revert", raw_name, f"s{i}",
                                                     "--running"))
        await asyncio.to_thread(run_cmd, "virsh", "-q", "snapshot-delete", raw_name, f"s{i}")

    async def uefi_side(i: int) -> None:
        # What libvirt 9.0 itself offers on a UEFI domain: an external RAM-only snapshot, revert by restore.
        record(i, "ucreate", await asyncio.to_thread(
            run_cmd, "virsh", "-q", "snapshot-create-as", twin_name, f"s{i}", "--no-metadata", "--memspec",
            f"file={memory_file},snapshot=external", "--diskspec", "vda,snapshot=no"))
        await asyncio.to_thread(os.sync)
        began = time.perf_counter()
        await asyncio.to_thread(run_cmd, "virsh", "-q", "destroy", twin_name)
        await asyncio.to_thread(run_cmd, "virsh", "-q", "restore", str(memory_file), "--running")
        record(i, "urevert", time.perf_counter() - began)
        memory_file.unlink()

    def record(i: int, key: str, value: float) -> None:
        if i:  # round 0 warms up and is not counted
            times[key].append(value)
        last[key] = value
    last: dict[str, float] = {}
    sides = [daemon_side, bios_side, uefi_side]
    try:
        await client.call("vm.start", vm["id"])
        conn.lookupByName(raw_name).create()
        conn.lookupByName(twin_name).create()
        await asyncio.sleep(5)  # the firmwares settle
        for i in range(rounds + 1):
            # Each side goes first in turn; each starts with nothing dirty in the page cache.
            for side in sides[i % 3:] + sides[:i % 3]:
                await asyncio.to_thread(os.sync)
                await side(i)
            print(f"  snapshot round {i}{' (warm-up)' if i == 0 else ''}, {sides[i % 3].__name__} first: daemon "
                  f"create {last['create']:.2f} s revert {last['revert']:.2f} s; virsh SeaBIOS {last['vcreate']:.2f} s"
                  f" / {last['vrevert']:.2f} s; virsh UEFI {last['ucreate']:.2f} s / {last['urevert']:.2f} s",
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
                      f"median of {rounds}; {what}; daemon {spread(times[key])} s, "
                      f"virsh {spread(times[prefix + key])} s")
        add_steps(table, steps[key])
    held = times["held"]
    table.add("  guest held (paused) by the daemon's create, ms", fmt(statistics.median(held), 0), "", "", "",
              f"median, {min(held):.0f}-{max(held):.0f}; virsh pauses the guest for its whole create")


async def run(size: int = 2 * GIB, memory: int = 512, rounds: int = 5) -> None:
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
