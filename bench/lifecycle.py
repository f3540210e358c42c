"""bench lifecycle: a real guest (tests/guest) booted and shut down through the daemon, beside the same domain
driven with raw libvirt-python in the same run.

Figures: from the vm.start call to the guest's GUEST-READY line on its serial console, and from the vm.stop
call (ACPI, no force) to the job's end with the VM STOPPED. The raw domain is the daemon's own XML
(virDomainGetXMLDesc) under another name and uuid, with another MAC: libvirt's create() then the console
log polled at the same interval; shutdownFlags(ACPI power button) then isActive() polled until false.
"""
from __future__ import annotations

import asyncio
import os
import random
import re
import statistics
import sys
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import AsyncIterator, Awaitable, Callable

import libvirt

from bench.common import (RpcClient, Table, cleanup_libvirt, first_pong, fmt, quiet_libvirt, ratio, spawn_daemon,
                          stop_process)
from bench.vm import remove_domains, renamed_xml
from tests.e2e.support import guest_vm, host_bridge, place_iso, ready_count
from tests.guest.build import guest_iso

URI = "qemu:///system"
POLL = 0.1              # seconds between looks at the console log, for both sides
BOOT_TIMEOUT = 180.0
STOP_TIMEOUT = 60.0
HEADERS = ["figure", "daemon", "libvirt raw", "ratio", "target", "note"]


def read_file(path: str) -> str:
    try:
        with open(path, "rb") as f:
            return f.read().decode(errors="replace")
    except FileNotFoundError:
        return ""


async def poll(what: str, fn: Callable[[], Awaitable[bool]], timeout: float, interval: float = POLL) -> None:
    """Await fn() every interval until it returns True; TimeoutError after timeout."""
    deadline = time.perf_counter() + timeout
    while not await fn():
        if time.perf_counter() > deadline:
            raise TimeoutError(f"no {what} after {timeout:.0f} s")
        await asyncio.sleep(interval)


@asynccontextmanager
async def domain(name: str) -> AsyncIterator[libvirt.virDomain]:
    """A libvirt handle on a domain, on a connection of its own for one round (other test sessions on this
    host may restart libvirtd between rounds)."""
    conn = await asyncio.to_thread(libvirt.open, URI)
    try:
        yield conn.lookupByName(name)
    finally:
        conn.close()


async def shut_off(dom: libvirt.virDomain, t0: float) -> float:
    """Seconds from t0 until libvirt says the domain is no longer active (polled every 10 ms)."""
    async def off() -> bool:
        return not await asyncio.to_thread(dom.isActive)
    await poll(f"shut off of {dom.name()}", off, STOP_TIMEOUT, interval=0.01)
    return time.perf_counter() - t0


Round = tuple[float, float, float]  # start -> GUEST-READY, stop -> STOPPED, stop -> libvirt shut off (s)


# -- the daemon side ------------------------------------------------------------------------------
async def daemon_round(client: RpcClient, vm_id: int, dom: libvirt.virDomain) -> Round:
    """Boot and ACPI stop through the API; libvirt is watched too, to tell the daemon's share of the stop."""
    async def console() -> str:
        return str(await client.call("vm.console_log", vm_id))
    before = ready_count(await console())
    t0 = time.perf_counter()
    await client.call("vm.start", vm_id)

    async def ready() -> bool:
        return ready_count(await console()) > before
    await poll("GUEST-READY through the daemon", ready, BOOT_TIMEOUT)
    booted = time.perf_counter() - t0
    t0 = time.perf_counter()
    watch = asyncio.create_task(shut_off(dom, t0))
    await client.call("vm.stop", vm_id, {"force": False}, timeout=STOP_TIMEOUT)  # legacy_jobs off: waits
    stopped = time.perf_counter() - t0
    status = await client.call("vm.status", vm_id)
    if status["state"] != "STOPPED":
        raise RuntimeError(f"vm.stop ended with the VM {status['state']}")
    return booted, stopped, await watch


# -- the raw side ---------------------------------------------------------------------------------
def raw_xml(daemon_xml: str, old_name: str, new_name: str) -> str:
    """The daemon's domain under another name (NVRAM and console log paths follow), uuid and MAC."""
    mac = "52:54:00:%02x:%02x:%02x" % tuple(random.randbytes(3))
    return re.sub(r"<mac address='[^']*'/>", f"<mac address='{mac}'/>", renamed_xml(daemon_xml, old_name, new_name))


async def raw_round(dom: libvirt.virDomain, console_log: str) -> Round:
    """Boot (create(), then the console log file polled) and ACPI stop with libvirt-python alone."""
    before = ready_count(await asyncio.to_thread(read_file, console_log))
    t0 = time.perf_counter()
    await asyncio.to_thread(dom.create)

    async def ready() -> bool:
        return ready_count(await asyncio.to_thread(read_file, console_log)) > before
    await poll("GUEST-READY of the raw domain", ready, BOOT_TIMEOUT)
    booted = time.perf_counter() - t0
    t0 = time.perf_counter()
    await asyncio.to_thread(dom.shutdownFlags, libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    off = await shut_off(dom, t0)
    return booted, off, off


# -- set-up and the table -------------------------------------------------------------------------
def serial_log(xml: str) -> str:
    match = re.search(r"<log file='([^']+)'", xml)
    if match is None:
        raise RuntimeError("the daemon's domain has no serial console log")
    return match[1]


Times = dict[str, list[Round]]   # "daemon" / "raw" -> one Round per boot


async def measure(client: RpcClient, iso: str, bridge: str, rounds: int, raw_name: str, out: Times) -> None:
    """Create the VM, define its raw twin, then alternate boots and stops on each side into out."""
    await client.call("core.set_options", {"legacy_jobs": False})
    nic = {"attributes": {"dtype": "NIC", "type": "VIRTIO", "nic_attach": bridge}, "order": 1001}
    vm = await client.call("vm.create", guest_vm(f"lifecycle{os.getpid()}", iso, devices=[nic]))
    name = f"{vm['id']}_{vm['name']}"
    conn = libvirt.open(URI)
    try:
        xml = raw_xml(conn.lookupByName(name).XMLDesc(0), name, raw_name)
        conn.defineXML(xml)
    finally:
        conn.close()
    try:
        for i in range(rounds):
            # Alternate which goes first so that neither always meets a host still busy with the other.
            for side in ("daemon", "raw") if i % 2 == 0 else ("raw", "daemon"):
                async with domain(name if side == "daemon" else raw_name) as dom:
                    times = await (daemon_round(client, vm["id"], dom) if side == "daemon"
                                   else raw_round(dom, serial_log(xml)))
                out[side].append(times)
                print(f"  round {i + 1} {side}: boot {times[0]:.2f} s, stop {times[1]:.2f} s "
                      f"(libvirt: off at {times[2]:.2f} s)", file=sys.stderr, flush=True)
    finally:
        await client.call("vm.delete", vm["id"], {"force": True})


def fill(table: Table, times: Times) -> None:
    for index, label in enumerate(("vm.start -> GUEST-READY on serial, s", "vm.stop (ACPI) -> STOPPED, s")):
        d, r = ([t[index] for t in times[side]] for side in ("daemon", "raw"))
        dm, rm = statistics.median(d), statistics.median(r)
        table.add(label, fmt(dm, 2), fmt(rm, 2), ratio(dm, rm), "<= 1.05",
                  f"median of {len(d)}/{len(r)}; daemon {min(d):.2f}-{max(d):.2f}, raw {min(r):.2f}-{max(r):.2f}")
    # The guest's own shutdown varies by more than the daemon adds: compare each daemon stop with the moment
    # libvirt itself reported that very domain off.
    lag = statistics.median(stop - off for _, stop, off in times["daemon"])
    table.add("  vm.stop: libvirt shut off -> job end, ms", fmt(lag * 1000, 0), "", "", "",
              "median over the same stops; the domain watched with isActive() every 10 ms")


async def run(rounds: int = 3) -> None:
    """Build (or reuse) the guest ISO, then time `rounds` boots and ACPI stops on each side."""
    quiet_libvirt()
    began = time.perf_counter()
    iso = await asyncio.to_thread(guest_iso, log=lambda m: print(f"[guest] {m}", file=sys.stderr, flush=True))
    table = Table(f"guest lifecycle: daemon vs libvirt-python on the same domain "
                  f"({iso.stat().st_size / 2**20:.1f} MiB guest ISO)", HEADERS)
    pid = os.getpid()
    pool, bridge, raw_name = f"mwbenchl{pid}", f"mwbl{pid % 100000}", f"mwbenchraw{pid}l"
    times: Times = {"daemon": [], "raw": []}
    with tempfile.TemporaryDirectory(prefix="mwbench-life-") as tmp, host_bridge(bridge):
        storage_iso = place_iso(iso, Path(tmp))
        daemon = spawn_daemon(Path(tmp), pool)
        try:
            await first_pong(daemon.unix, daemon.process)
            async with await RpcClient.open(daemon.unix) as client:
                await measure(client, storage_iso, bridge, rounds, raw_name, times)
        except Exception as e:
            table.note(f"aborted: {type(e).__name__}: {e}")
            if daemon.process.poll() is not None:
                table.note(f"daemon log:\n{daemon.log_tail()}")
        finally:
            stop_process(daemon.process)
            conn = libvirt.open(URI)
            remove_domains(conn, [raw_name])
            conn.close()
            cleanup_libvirt(pool)
    if times["daemon"] and times["raw"]:
        fill(table, times)
    table.note("the raw side polls the console log file itself at the same 0.1 s interval the daemon side "
               "polls vm.console_log; its stop polls isActive() every 10 ms")
    table.print()
    print(f"bench lifecycle took {time.perf_counter() - began:.1f} s")
