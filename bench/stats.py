"""bench stats: the cost of live statistics and of the serial console, beside raw libvirt in the same run.

- One statistics interval with many VMs defined and a few running: the daemon's CPU time per interval (its
  whole process, idle otherwise), beside one raw getAllDomainStats call made by the bench itself; then the
  same, and the sample's wall time, with a few active domains that are not the daemon's, beside the figures
  without them.
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

from bench.common import (RpcClient, RpcError, Table, bulk, cleanup_libvirt, cpu_ns, first_pong, fmt, quiet_libvirt,
                          ratio, spawn_daemon, stop_process)
from bench.vm import remove_domains, renamed_xml

URI = "qemu:///system"
INTERVAL = 2.0
SUBSCRIBERS = 100
FOREIGN = 5             # active (paused) domains of the libvirtd that are not the daemon's
SAMPLE_READS = 5        # /metrics reads, one per interval, for the sample's wall time
KEYSTROKES = 20
HEADERS = ["figure", "daemon", "raw", "ratio", "target", "note"]


async def run(vms: int = 1000, running: int = 10, intervals: int = 10) -> None:
    """Define `vms` VMs, start `running` of them, measure, remove everything."""
    quiet_libvirt()
    table = Table(f"statistics and serial console with {vms:,} VMs defined, {running} running", HEADERS)
    conn = libvirt.open(URI)
    domains: list[str] = []
    foreign: list[str] = []
    with tempfile.TemporaryDirectory(prefix="mwbench-stats-") as tmp:
        daemon = spawn_daemon(Path(tmp), f"mwbench{os.getpid()}")
        try:
            await first_pong(daemon.unix, daemon.process)
            async with await RpcClient.open(daemon.unix) as client:
                ids = await define(client, vms, domains)
                for vm_id in ids[:running]:
                    await client.call("vm.start", vm_id)
                await asyncio.sleep(3 * INTERVAL)  # the sampler has seen them all
                own_cpu = await interval_cost(daemon.process.pid, conn, table, intervals)
                await foreign_cost(daemon, client, conn, domains[0], table, intervals, own_cpu, foreign)
                remove_domains(conn, foreign)
                await subscriber_cost(daemon, table, intervals)
                await console_round_trip(client, conn, ids[0], domains[0], table)
        except Exception as e:
            table.note(f"aborted: {type(e).__name__}: {e}")
        finally:
            stop_process(daemon.process)
            remove_domains(conn, foreign)
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


async def daemon_cpu(pid: int, seconds: float) -> float:
    """CPU seconds the daemon used over `seconds` of wall time."""
    before = cpu_ns(pid)
    await asyncio.sleep(seconds)
    return (cpu_ns(pid) - before) / 1e9


def raw_stats_call(conn: libvirt.virConnect) -> tuple[float, float, int]:
    """Wall and CPU seconds of one getAllDomainStats call over every running domain of the libvirtd, and how
    many domains it returned."""
    from middlewared.plugins.vm.stats_api import STATS_KINDS
    wall, cpu = time.perf_counter(), time.process_time()
    found = len(conn.getAllDomainStats(STATS_KINDS, libvirt.VIR_CONNECT_GET_ALL_DOMAINS_STATS_ACTIVE))
    return time.perf_counter() - wall, time.process_time() - cpu, found


async def interval_cost(pid: int, conn: libvirt.virConnect, table: Table, intervals: int) -> float:
    """The daemon's CPU seconds per interval, beside one raw bulk call; returned for foreign_cost."""
    cpu = await daemon_cpu(pid, intervals * INTERVAL) / intervals
    raws = [raw_stats_call(conn) for _ in range(intervals)]
    wall = statistics.median(r[0] for r in raws)
    raw_cpu = statistics.median(r[1] for r in raws)
    table.add("daemon CPU ms per 2 s interval", fmt(cpu * 1000, 2), fmt(raw_cpu * 1000, 2), ratio(cpu, raw_cpu),
              "-", f"raw: the client CPU of one getAllDomainStats call in the bench ({raws[0][2]} running domains "
                   f"on the host; the call's wall time {wall * 1000:,.1f} ms, spent in libvirtd)")
    return cpu


async def sample_seconds(daemon: Any, client: RpcClient) -> float | None:
    """The median over a few intervals of how long the daemon's statistics sample took (its /metrics gauge), or
    None when it has no /metrics."""
    try:
        key = (await client.call("api_key.create", {"name": f"bench{time.time_ns()}", "username": "root"}))["key"]
    except RpcError:
        return None
    seen = []
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {key}"}) as session:
        for _ in range(SAMPLE_READS):
            async with session.get(f"http://127.0.0.1:{daemon.port}/metrics") as response:
                text = await response.text()
            seen += [float(line.split()[-1]) for line in text.splitlines()
                     if line.startswith("middlewared_stats_sample_seconds ")]
            await asyncio.sleep(INTERVAL)
    return statistics.median(seen) if seen else None


async def foreign_cost(daemon: Any, client: RpcClient, conn: libvirt.virConnect, template: str, table: Table,
                       intervals: int, own_cpu: float, foreign: list[str]) -> None:
    """The daemon's CPU per interval and its sample's wall time again once FOREIGN domains that are not its own
    run on the same libvirtd (copies of one of its domains, defined and started by the bench): statistics of its
    own VMs only should cost the same."""
    pid = daemon.process.pid
    own_wall = await sample_seconds(daemon, client)
    xml = conn.lookupByName(template).XMLDesc(0)
    for i in range(FOREIGN):
        name = f"mwbenchforeign{os.getpid()}d{i}"
        foreign.append(name)
        # Paused: libvirt still asks its QEMU for statistics, but its guest takes no CPU from the measurement.
        conn.defineXML(renamed_xml(xml, template, name)).createWithFlags(libvirt.VIR_DOMAIN_START_PAUSED)
    await asyncio.sleep(2 * INTERVAL)
    cpu = await daemon_cpu(pid, intervals * INTERVAL) / intervals
    table.add(f"  with {FOREIGN} other domains active, ms", fmt(cpu * 1000, 2), fmt(own_cpu * 1000, 2),
              ratio(cpu, own_cpu), "<= 1.1", "raw column: the same daemon before they started (the line above)")
    wall = await sample_seconds(daemon, client)
    if wall is None or own_wall is None:
        table.add("statistics sample wall time", "-", "-", "-", "", "skipped: the daemon has no /metrics gauge")
        return
    raws = [raw_stats_call(conn) for _ in range(SAMPLE_READS)]
    raw_wall = statistics.median(r[0] for r in raws)
    table.add(f"statistics sample wall time, {FOREIGN} other domains active, ms", fmt(wall * 1000, 2),
              fmt(raw_wall * 1000, 2), ratio(wall, raw_wall), "",
              f"/metrics sample_seconds, median of {SAMPLE_READS}; raw: getAllDomainStats over the host "
              f"({raws[0][2]} active domains)")
    table.add("  before they started, ms", fmt(own_wall * 1000, 2), "", "", "", "")


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
