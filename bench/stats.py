"""bench stats: the cost of live statistics and of the serial console, beside raw libvirt in the same run.

- One statistics interval with many VMs defined and a few running: the daemon's CPU time per interval (its
  whole process, idle otherwise), beside one raw getAllDomainStats call made by the bench itself.
- 100 subscribers to vm.stats: the daemon's CPU share of one core, beside the same daemon with none.
- Serial console round trip: a keystroke sent through the WebSocket until its echo comes back (the UEFI shell
  of a running VM echoes what is typed), beside the same through `virsh console` in a pseudo-terminal.
"""
from __future__ import annotations

import asyncio
import os
import pty
import select
import statistics
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import libvirt

from bench.common import (RpcClient, Table, bulk, cleanup_libvirt, first_pong, fmt, quiet_libvirt, ratio,
                          spawn_daemon, stop_process)
from bench.vm import remove_domains

URI = "qemu:///system"
INTERVAL = 2.0
SUBSCRIBERS = 100
KEYSTROKES = 20
HEADERS = ["figure", "daemon", "raw", "ratio", "target", "note"]


async def run(vms: int = 1000, running: int = 10, intervals: int = 10) -> None:
    """Define `vms` VMs, start `running` of them, measure, remove everything."""
    quiet_libvirt()
    table = Table(f"statistics and serial console with {vms:,} VMs defined, {running} running", HEADERS)
    conn = libvirt.open(URI)
    domains: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mwbench-stats-") as tmp:
        daemon = spawn_daemon(Path(tmp), f"mwbench{os.getpid()}")
        try:
            await first_pong(daemon.unix, daemon.process)
            async with await RpcClient.open(daemon.unix) as client:
                ids = await define(client, vms, domains)
                for vm_id in ids[:running]:
                    await client.call("vm.start", vm_id)
                await asyncio.sleep(3 * INTERVAL)  # the sampler has seen them all
                await interval_cost(daemon.process.pid, conn, table, intervals)
                await subscriber_cost(daemon, table, intervals)
                await console_round_trip(client, conn, ids[0], domains[0], table)
        except Exception as e:
            table.note(f"aborted: {type(e).__name__}: {e}")
        finally:
            stop_process(daemon.process)
            remove_domains(conn, domains)
            conn.close()
            cleanup_libvirt(daemon.pool)
    table.print()


async def define(client: RpcClient, count: int, domains: list[str]) -> list[int]:
    ids: list[int] = []

    async def create(i: int) -> None:
        vm = await client.call("vm.create", {"name": f"st{i}", "memory": 64, "autostart": False})
        ids.append(vm["id"])
        domains.append(f"{vm['id']}_{vm['name']}")
    errors = await bulk(count, create)
    if errors:
        raise RuntimeError(f"vm.create failed: {errors[0]}")
    ids.sort()
    domains.sort(key=lambda d: int(d.partition("_")[0]))
    return ids


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process so far, in ns (schedstat: finer than the 10 ms of clock ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    return total


async def daemon_cpu(pid: int, seconds: float) -> float:
    """CPU seconds the daemon used over `seconds` of wall time."""
    before = cpu_ns(pid)
    await asyncio.sleep(seconds)
    return (cpu_ns(pid) - before) / 1e9


def raw_stats_call(conn: libvirt.virConnect) -> tuple[float, float, int]:
    """Wall and CPU seconds of one bulk call as the sampler makes it, and how many domains it returned."""
    from middlewared.plugins.vm.stats_api import read_all
    wall, cpu = time.perf_counter(), time.process_time()
    found = len(read_all(conn))
    return time.perf_counter() - wall, time.process_time() - cpu, found


async def interval_cost(pid: int, conn: libvirt.virConnect, table: Table, intervals: int) -> None:
    cpu = await daemon_cpu(pid, intervals * INTERVAL) / intervals
    raws = [raw_stats_call(conn) for _ in range(intervals)]
    wall = statistics.median(r[0] for r in raws)
    raw_cpu = statistics.median(r[1] for r in raws)
    table.add("daemon CPU ms per 2 s interval", fmt(cpu * 1000, 2), fmt(raw_cpu * 1000, 2), ratio(cpu, raw_cpu),
              "-", f"raw: the client CPU of one getAllDomainStats call in the bench ({raws[0][2]} running domains "
                   f"on the host; the call's wall time {wall * 1000:,.1f} ms, spent in libvirtd)")


async def subscriber_cost(daemon: Any, table: Table, intervals: int) -> None:
    idle = await daemon_cpu(daemon.process.pid, intervals * INTERVAL) / (intervals * INTERVAL)
    clients = [await RpcClient.open(daemon.unix) for _ in range(SUBSCRIBERS)]
    try:
        for client in clients:
            await client.call("core.subscribe", "vm.stats")
        busy = await daemon_cpu(daemon.process.pid, intervals * INTERVAL) / (intervals * INTERVAL)
        received = min(c.events.qsize() for c in clients)
    finally:
        await asyncio.gather(*(c.close() for c in clients))
    table.add(f"daemon CPU % of a core, {SUBSCRIBERS} vm.stats subscribers", fmt(busy * 100, 2),
              fmt(idle * 100, 2), ratio(busy, idle), "< 5 %",
              f"raw: the same daemon without subscribers; each subscriber got >= {received} events "
              f"in {intervals * INTERVAL:.0f} s")


async def console_round_trip(client: RpcClient, conn: libvirt.virConnect, vm_id: int, domain: str,
                             table: Table) -> None:
    uri = await client.call("vm.get_console_web_uri", vm_id)
    path_and_query = uri.split("/", 3)[3]
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=client_socket(client))) as s:
        async with s.ws_connect(f"ws://localhost/{path_and_query}") as ws:
            await ws_wait(ws, b"Shell>", 180)
            await ws_drain(ws)
            daemon = [await ws_echo(ws, b"a") for _ in range(KEYSTROKES)]
            await ws.send_bytes(b"\x08" * KEYSTROKES)
    await asyncio.sleep(1)  # the daemon lets the pty go
    raw = await asyncio.to_thread(virsh_round_trips, domain)
    d, r = statistics.median(daemon), statistics.median(raw) if raw else None
    table.add("serial keystroke -> echo, median ms", fmt(d * 1000, 2), fmt(r * 1000 if r else None, 2),
              ratio(d, r), "<= 1.2",
              f"raw: virsh console in a pty; {KEYSTROKES} keystrokes each into the guest's UEFI shell")


def client_socket(client: RpcClient) -> str:
    connector = client._session.connector
    assert isinstance(connector, aiohttp.UnixConnector)
    return connector.path


async def ws_wait(ws: aiohttp.ClientWebSocketResponse, wanted: bytes, timeout: float) -> None:
    data = b""
    deadline = time.perf_counter() + timeout
    while wanted not in data:
        msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - time.perf_counter()))
        data += msg.data if isinstance(msg.data, bytes) else b""


async def ws_drain(ws: aiohttp.ClientWebSocketResponse) -> None:
    """Read until the console has been quiet for a second."""
    try:
        while True:
            await asyncio.wait_for(ws.receive(), 1)
    except asyncio.TimeoutError:
        pass


async def ws_echo(ws: aiohttp.ClientWebSocketResponse, key: bytes) -> float:
    began = time.perf_counter()
    await ws.send_bytes(key)
    await ws_wait(ws, key, 10)
    return time.perf_counter() - began


def virsh_round_trips(domain: str) -> list[float]:
    """The same keystrokes through `virsh console` on a pseudo-terminal (as a person at a terminal would)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(["virsh", "-c", URI, "console", "--force", domain], stdin=slave, stdout=slave,
                            stderr=slave, close_fds=True)
    os.close(slave)
    out: list[float] = []
    try:
        pty_wait(master, b"Escape character", 20)
        time.sleep(1)
        drain(master)
        for _ in range(KEYSTROKES):
            began = time.perf_counter()
            os.write(master, b"a")
            pty_wait(master, b"a", 10)
            out.append(time.perf_counter() - began)
        os.write(master, b"\x08" * KEYSTROKES)
        time.sleep(0.5)
        os.write(master, b"\x1d")  # virsh sees its escape character only at the start of a read
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
    return out


def pty_wait(fd: int, wanted: bytes, timeout: float) -> None:
    data = b""
    deadline = time.perf_counter() + timeout
    while wanted not in data:
        remaining = deadline - time.perf_counter()
        if remaining <= 0 or not select.select([fd], [], [], remaining)[0]:
            raise TimeoutError(f"no {wanted!r} from virsh console")
        data += os.read(fd, 4096)


def drain(fd: int) -> None:
    while select.select([fd], [], [], 0.05)[0]:
        os.read(fd, 4096)
