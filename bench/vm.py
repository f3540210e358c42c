"""bench vm: vm.* with many VMs defined, beside the same work done directly with libvirt-python.

Every phase is optional: a method the daemon does not offer (see core.get_methods) or a phase that fails
prints "skipped: <reason>" and the bench goes on; whatever was created is removed at the end.
"""
from __future__ import annotations

import asyncio
import os
import re
import statistics
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import libvirt

from bench.common import (CALL_TIMEOUT, IN_FLIGHT, RpcClient, RpcError, Table, bulk, cleanup_libvirt, cpu_ns,
                          first_pong, fmt, percentile, quiet_libvirt, ratio, spawn_daemon, stop_process, tenth_rates)
from bench.vm_devices import device_create_all

URI = "qemu:///system"
QUERY_CALLS = 30
GET_INSTANCE_CALLS = 200
RAW_DEFINES = 100        # domains the raw define baseline creates (and removes) itself
HEADERS = ["figure", "daemon", "libvirt raw", "ratio", "target", "note"]


@dataclass
class State:
    """What the bench created, so that clean-up removes exactly that."""

    vm_ids: list[int] = field(default_factory=list)
    domains: list[str] = field(default_factory=list)      # the daemon's domain names, "{id}_{name}"
    raw_domains: list[str] = field(default_factory=list)  # defined directly by the bench
    methods: set[str] = field(default_factory=set)
    daemon_pid: int = 0


class Skip(Exception):
    """A phase cannot run; the message says why."""


def ms(seconds: float) -> float:
    return seconds * 1000


def need(state: State, *methods: str) -> None:
    missing = [m for m in methods if m not in state.methods]
    if missing:
        raise Skip(f"the daemon has no {', '.join(missing)}")


async def run(vms: int = 1000, starts: int = 5) -> None:
    """Define `vms` VMs through the daemon, measure, and remove everything again."""
    quiet_libvirt()
    began = time.perf_counter()
    table = Table(f"vm.* with {vms:,} VMs defined (daemon vs libvirt-python in the bench process)", HEADERS)
    state = State()
    start_libvirt_events()
    try:
        conn = libvirt.open(URI)
    except libvirt.libvirtError as e:
        print(f"bench vm skipped: cannot open {URI}: {e}")
        return
    pool = f"mwbench{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="mwbench-vm-") as tmp:
        daemon = spawn_daemon(Path(tmp), pool)
        state.daemon_pid = daemon.process.pid
        try:
            await first_pong(daemon.unix, daemon.process)
            async with await RpcClient.open(daemon.unix) as client:
                try:
                    await phases(client, conn, state, table, vms, starts)
                finally:
                    await phase(table, "vm.delete", lambda: delete_all(client, state, table))
        except Exception as e:
            table.note(f"aborted: {type(e).__name__}: {e}")
            if daemon.process.poll() is not None:
                table.note(f"daemon log:\n{daemon.log_tail()}")
        finally:
            stop_process(daemon.process)
            remove_domains(conn, state.raw_domains)
            leftovers = remove_domains(conn, state.domains)
            if leftovers:
                table.note(f"removed {leftovers} domains directly with libvirt (not deleted through the daemon)")
            conn.close()
            cleanup_libvirt(pool)
    table.print()
    print(f"bench vm took {time.perf_counter() - began:.1f} s")


async def phases(client: RpcClient, conn: libvirt.virConnect, state: State, table: Table,
                 vms: int, starts: int) -> None:
    state.methods = set(await client.call("core.get_methods"))
    if "core.set_options" in state.methods:
        # Job methods (vm.stop, maybe vm.delete) then answer when the job ends, not with a job id.
        await client.call("core.set_options", {"legacy_jobs": False})
    await phase(table, "vm.create", lambda: create_all(client, conn, state, table, vms))
    if not state.vm_ids:
        return
    if "vm.device.create" in state.methods:
        await phase(table, "vm.device.create", lambda: device_create_all(
            client, state.vm_ids, table, lambda: raw_define_rate(conn, state)[0],
            lambda: cpu_seconds(state.daemon_pid)))
    await phase(table, "vm.query", lambda: query_latency(client, conn, table))
    await phase(table, "vm.get_instance", lambda: get_instance_latency(client, conn, state, table))
    await phase(table, "reconciliation", lambda: reconcile_listing(conn, table))
    await phase(table, "vm.start", lambda: start_latency(client, conn, state, table, starts))


async def phase(table: Table, name: str, body: Callable[[], Awaitable[None]]) -> None:
    """Run one phase; a missing method or a failure becomes a note, not the end of the bench."""
    try:
        await body()
    except Skip as e:
        table.add(name, "-", "-", "-", "", f"skipped: {e}")
    except Exception as e:  # a bench reports a failed phase and goes on to the next one
        table.add(name, "-", "-", "-", "", f"skipped: {type(e).__name__}: {e}"[:200])


# -- creating and deleting ------------------------------------------------------------------------------
async def create_all(client: RpcClient, conn: libvirt.virConnect, state: State, table: Table, vms: int) -> None:
    need(state, "vm.create")

    answered: list[float] = []

    async def create(i: int) -> None:
        vm = await client.call("vm.create", {"name": f"bench{i}", "memory": 64, "autostart": False},
                               timeout=CALL_TIMEOUT)
        answered.append(time.perf_counter())
        state.vm_ids.append(vm["id"])
        state.domains.append(f"{vm['id']}_{vm['name']}")
    cpu0 = cpu_seconds(state.daemon_pid)
    t0 = time.perf_counter()
    try:
        await create(0)  # one alone first: when creating hangs or fails, 16 at a time would not do better
    except (RpcError, TimeoutError) as e:
        raise Skip(f"vm.create failed: {type(e).__name__}: {e}") from None
    errors = await bulk(vms - 1, lambda i: create(i + 1))
    took = time.perf_counter() - t0
    daemon_cpu = (cpu_seconds(state.daemon_pid) - cpu0) / len(state.vm_ids)
    daemon_rate = len(state.vm_ids) / took
    raw_rate, raw_cpu = raw_define_rate(conn, state)
    note = f"{len(state.vm_ids):,} created in {took:.1f} s, {IN_FLIGHT} in flight; raw: defineXML x{RAW_DEFINES}"
    table.add("vm.create, VMs/s", fmt(daemon_rate), fmt(raw_rate), ratio(daemon_rate, raw_rate), ">= 0.5", note)
    first, last = tenth_rates(t0, answered)
    # A create whose cost grows with the number of VMs shows as a last tenth slower than the first.
    table.add("  first tenth of the VMs", fmt(first), fmt(raw_rate), ratio(first, raw_rate), "", "")
    table.add("  last tenth of the VMs", fmt(last), fmt(raw_rate), ratio(last, raw_rate), ">= 0.5",
              f"last/first {last / first:.2f}" if first else "")
    # CPU time does not depend on what else the machine runs, unlike the rates above.
    table.add("  CPU per create, ms", fmt(ms(daemon_cpu), 2), fmt(ms(raw_cpu), 2), ratio(daemon_cpu, raw_cpu), "",
              "daemon process; raw: the bench process per defineXML (libvirtd's own work is in neither)")
    if errors:
        table.note(f"vm.create: {len(errors)} failed, first: {errors[0]}"[:300])


def cpu_seconds(pid: int) -> float:
    """CPU time a process has used so far (one start costs a few milliseconds: finer than clock ticks)."""
    return cpu_ns(pid) / 1e9


def raw_define_rate(conn: libvirt.virConnect, state: State) -> tuple[float, float]:
    """Domains/s for defineXML (one thread) of copies of a daemon VM's domain, undefined right after, and the
    bench process's CPU seconds per define."""
    xml = conn.lookupByName(state.domains[0]).XMLDesc(0)
    names = [f"mwbenchraw{os.getpid()}d{i}" for i in range(RAW_DEFINES)]
    copies = [renamed_xml(xml, state.domains[0], n) for n in names]
    state.raw_domains.extend(names)
    cpu0, t0 = time.process_time(), time.perf_counter()
    for copy in copies:
        conn.defineXML(copy)
    took, cpu = time.perf_counter() - t0, time.process_time() - cpu0
    remove_domains(conn, names)
    return RAW_DEFINES / took, cpu / RAW_DEFINES


async def delete_all(client: RpcClient, state: State, table: Table) -> None:
    """Delete every VM of the (private) daemon, including any whose vm.create answer came too late."""
    need(state, "vm.delete", "vm.query")
    vms = await client.call("vm.query", timeout=CALL_TIMEOUT)
    state.domains = sorted(set(state.domains) | {f"{vm['id']}_{vm['name']}" for vm in vms})
    ids = [vm["id"] for vm in vms]
    if not ids:
        return
    deleted = 0

    async def delete(i: int) -> None:
        nonlocal deleted
        await client.call("vm.delete", ids[i], {"force": True}, timeout=CALL_TIMEOUT)
        deleted += 1
    t0 = time.perf_counter()
    errors = await bulk(len(ids), delete)
    took = time.perf_counter() - t0
    table.add("vm.delete, VMs/s", fmt(deleted / took), "-", "-", "",
              f"{deleted:,} deleted in {took:.1f} s, {IN_FLIGHT} in flight")
    if errors:
        table.note(f"vm.delete: {len(errors)} failed, first: {errors[0]}"[:300])


def renamed_xml(xml: str, old_name: str, new_name: str) -> str:
    """The same domain under another name (also in its NVRAM and log paths) and a fresh uuid."""
    xml = xml.replace(old_name, new_name)
    return re.sub(r"<uuid>[^<]*</uuid>", f"<uuid>{uuid.uuid4()}</uuid>", xml, count=1)


def remove_domains(conn: libvirt.virConnect, names: Sequence[str]) -> int:
    """Destroy and undefine those of the named domains that still exist; return how many did."""
    removed = 0
    for name in names:
        try:
            dom = conn.lookupByName(name)
        except libvirt.libvirtError:
            continue
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE)
        removed += 1
    return removed


# -- reading ----------------------------------------------------------------------------------------------
async def timed(count: int, call: Callable[[int], Awaitable[Any]]) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        await call(i)
        out.append(time.perf_counter() - t0)
    return out


def raw_timed(count: int, call: Callable[[int], Any]) -> list[float]:
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        call(i)
        out.append(time.perf_counter() - t0)
    return out


def add_latency(table: Table, label: str, daemon: list[float], raw: list[float], note: str) -> None:
    for p in (50, 99):
        d, r = ms(percentile(daemon, p)), ms(percentile(raw, p))
        table.add(f"{label} p{p}, ms", fmt(d, 2), fmt(r, 2), ratio(d, r), "", note)


async def query_latency(client: RpcClient, conn: libvirt.virConnect, table: Table) -> None:
    rows = await client.call("vm.query")
    if not rows or "status" not in rows[0]:
        raise Skip("vm.query returned no rows with status")

    def raw(_: int) -> None:
        for dom in conn.listAllDomains():
            try:
                dom.state()
            except libvirt.libvirtError:
                pass  # undefined meanwhile by another client of the shared libvirtd
    daemon = await timed(QUERY_CALLS, lambda _: client.call("vm.query"))
    baseline = raw_timed(QUERY_CALLS, raw)
    add_latency(table, "vm.query (all)", daemon, baseline,
                f"{len(rows):,} rows, x{QUERY_CALLS}; raw: listAllDomains + state() each")


async def get_instance_latency(client: RpcClient, conn: libvirt.virConnect, state: State, table: Table) -> None:
    need(state, "vm.get_instance")
    ids, names = state.vm_ids, state.domains
    daemon = await timed(GET_INSTANCE_CALLS, lambda i: client.call("vm.get_instance", ids[i % len(ids)]))
    baseline = raw_timed(GET_INSTANCE_CALLS, lambda i: conn.lookupByName(names[i % len(names)]).state())
    add_latency(table, "vm.get_instance", daemon, baseline,
                f"x{GET_INSTANCE_CALLS}; raw: lookupByName + state()")


async def reconcile_listing(conn: libvirt.virConnect, table: Table) -> None:
    """The libvirt reads of the daemon's start-up reconciliation (its own function, run here) beside the bare
    listing of every domain it starts from."""
    from middlewared.plugins.vm.reconcile import list_domains
    daemon, baseline, found = [], [], 0
    for _ in range(3):
        t0 = time.perf_counter()
        found = len(list_domains(conn))
        daemon.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        total = len(conn.listAllDomains())
        baseline.append(time.perf_counter() - t0)
    d, r = ms(statistics.median(daemon)), ms(statistics.median(baseline))
    table.add("start-up reconciliation reads, ms", fmt(d, 1), fmt(r, 1), ratio(d, r), "",
              f"median of 3; {found:,} of the {total:,} domains of the libvirtd read (one metadata call each); "
              "raw: listAllDomains")


# -- starting ---------------------------------------------------------------------------------------------
def is_state(vm_id: int, wanted: str) -> Callable[[dict[str, Any]], bool]:
    def match(event: dict[str, Any]) -> bool:
        params = event.get("params") or {}
        status = (params.get("fields") or {}).get("status") or {}
        return (event.get("method") == "collection_update" and params.get("collection") == "vm.query"
                and params.get("msg") == "changed" and params.get("id") == vm_id and status.get("state") == wanted)
    return match


async def start_latency(client: RpcClient, conn: libvirt.virConnect, state: State, table: Table,
                        starts: int) -> None:
    need(state, "vm.start", "core.subscribe")
    stop = "vm.poweroff" if "vm.poweroff" in state.methods else "vm.stop"
    need(state, stop)
    await client.call("core.subscribe", "vm.query")
    raw_name = f"mwbenchraw{os.getpid()}s"
    state.raw_domains.append(raw_name)
    # The same XML `virsh dumpxml` prints (virDomainGetXMLDesc), under another name and uuid.
    raw_dom = conn.defineXML(renamed_xml(conn.lookupByName(state.domains[0]).XMLDesc(0), state.domains[0],
                                         raw_name))
    # The same VM every time, like the raw domain: only the first start creates the NVRAM file.
    vm_id = state.vm_ids[0]
    daemon, returned, evented, cpu = [], [], [], []
    for _ in range(starts):
        cpu0 = cpu_seconds(state.daemon_pid)
        daemon.append(await daemon_start(client, vm_id))
        cpu.append(cpu_seconds(state.daemon_pid) - cpu0)
        await client.call(stop, vm_id, *([{"force": True}] if stop == "vm.stop" else []))
        await client.next_event(is_state(vm_id, "STOPPED"))
        until_running, until_event = await asyncio.to_thread(raw_start, conn, raw_dom)
        returned.append(until_running)
        evented.append(until_event)
        raw_dom.destroy()
    d, e, r = (ms(statistics.median(x)) for x in (daemon, evented, returned))
    table.add("vm.start -> RUNNING event, ms", fmt(d, 1), fmt(e, 1), ratio(d, e), "overhead <= 30 ms",
              f"median of {starts}; overhead {d - e:+.1f} ms; raw: create() -> STARTED lifecycle event")
    table.add("  raw: until state() is running", "", fmt(r, 1), ratio(d, r), "",
              f"overhead {d - r:+.1f} ms; create() returns after libvirt has sent the STARTED event")
    # The daemon's own work for a start, which a busy host does not inflate as it does the latencies above.
    table.add("  CPU per vm.start, ms", fmt(ms(statistics.median(cpu)), 1), "", "", "",
              "daemon process, from the call to the RUNNING event; median")


async def daemon_start(client: RpcClient, vm_id: int) -> float:
    """Seconds from sending vm.start to the CHANGED event that says RUNNING."""
    client.drain_events()
    t0 = time.perf_counter()
    call = asyncio.create_task(client.call("vm.start", vm_id))
    event = asyncio.create_task(client.next_event(is_state(vm_id, "RUNNING")))
    await asyncio.wait((call, event), return_when=asyncio.FIRST_COMPLETED)
    if call.done() and call.exception() is not None:
        event.cancel()  # vm.start failed: no RUNNING event will come
    await call
    arrived, _ = await event
    return arrived - t0


def raw_start(conn: libvirt.virConnect, dom: libvirt.virDomain) -> tuple[float, float]:
    """Seconds from create() until state() says running, and until the STARTED lifecycle event."""
    started = threading.Event()
    stamp = [0.0]

    def on_lifecycle(_conn: object, _dom: object, event: int, _detail: int, _opaque: object) -> None:
        if event == libvirt.VIR_DOMAIN_EVENT_STARTED:
            stamp[0] = time.perf_counter()
            started.set()
    callback = conn.domainEventRegisterAny(dom, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_lifecycle, None)
    try:
        t0 = time.perf_counter()
        dom.create()
        while dom.state()[0] != libvirt.VIR_DOMAIN_RUNNING:
            time.sleep(0.0005)
        running = time.perf_counter() - t0
        if not started.wait(30):
            raise TimeoutError(f"no STARTED event for {dom.name()}")
        return running, stamp[0] - t0
    finally:
        conn.domainEventDeregisterAny(callback)


def start_libvirt_events() -> None:
    """libvirt's own event loop in a thread, so that this process receives domain events (once per process)."""
    global _events_started
    if _events_started:
        return
    libvirt.virEventRegisterDefaultImpl()  # before the connection is opened

    def loop() -> None:
        while True:
            libvirt.virEventRunDefaultImpl()
    threading.Thread(target=loop, name="libvirt-events", daemon=True).start()
    _events_started = True


_events_started = False
