"""vm.get_stats, vm.get_stats_history and the vm.stats event, fed by one bulk libvirt read per interval.

The sampler runs while the daemon runs (so the last hour is there when a page opens): every INTERVAL seconds
it reads the statistics of this daemon's running VMs, and of no other domain of the libvirtd, in one bulk
libvirt call (read_own), computes rates (middlewared/plugins/vm/stats.py) and sends one vm.stats event carrying
every VM. Scoped readers receive the same event with only the VMs their grants cover.
"""
from __future__ import annotations

import asyncio
import logging
from typing import TYPE_CHECKING, Any, Collection, Mapping, Protocol

import libvirt

from middlewared.credentials import Credentials
from middlewared.plugin import EventSpec
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.model import domain_name
from middlewared.plugins.vm.stats import HISTORY_FIELDS, StatsTable

if TYPE_CHECKING:
    from middlewared.api.rpc import RpcConnection
    from middlewared.middleware import Middleware
    from middlewared.plugins.vm.records import VMRecords

logger = logging.getLogger(__name__)

READ = ("VM_READ",)
STATS_EVENT = "vm.stats"
# What the sampler asks for: no per-VM calls, no stats libvirt would fetch from the guest agent.
STATS_KINDS = (libvirt.VIR_DOMAIN_STATS_STATE | libvirt.VIR_DOMAIN_STATS_CPU_TOTAL | libvirt.VIR_DOMAIN_STATS_BALLOON
               | libvirt.VIR_DOMAIN_STATS_VCPU | libvirt.VIR_DOMAIN_STATS_INTERFACE | libvirt.VIR_DOMAIN_STATS_BLOCK)

_N = {"type": ["integer", "null"]}
_R = {"type": ["number", "null"]}


def _counter(description: str, rate: bool = True) -> dict[str, Any]:
    return {**(_R if rate else _N), "description": description}


_DISK = {
    "type": "object", "description": "One disk (libvirt target name, e.g. vda, sda).",
    "properties": {
        "name": {"type": "string", "description": "Target device name in the guest's bus."},
        "path": {"type": ["string", "null"], "description": "Host path of the disk's source."},
        **{f"{k}": _counter(f"Total {k.replace('_', ' ')} since the VM started.", False)
           for k in ("read_bytes", "write_bytes", "read_ops", "write_ops")},
        **{f"{k}_per_s": _counter(f"{k.replace('_', ' ').capitalize()} per second over the last interval "
                                  "(null on a VM's first sample).")
           for k in ("read_bytes", "write_bytes", "read_ops", "write_ops")},
    },
}
_NIC = {
    "type": "object", "description": "One NIC (host tap device name, e.g. vnet3).",
    "properties": {
        "name": {"type": "string", "description": "Host-side interface name."},
        **{f"{k}": _counter(f"Total {k.replace('_', ' ')} since the VM started.", False)
           for k in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")},
        **{f"{k}_per_s": _counter(f"{k.replace('_', ' ').capitalize()} per second over the last interval.")
           for k in ("rx_bytes", "tx_bytes", "rx_packets", "tx_packets")},
    },
}
STATS_ENTRY: dict[str, Any] = {
    "type": "object", "description": "Statistics of one running VM at one sample.",
    "properties": {
        "id": {"type": "integer", "description": "VM id."},
        "name": {"type": "string", "description": "VM name."},
        "time": {"type": "number", "description": "Unix time of the sample."},
        "interval": {**_R, "description": "Seconds since the VM's previous sample (null on its first)."},
        "cpu": {"type": "object", "description": "CPU use.", "properties": {
            "vcpus": {"type": "integer", "description": "vCPUs the guest has."},
            "percent": {**_R, "description": "Busy time of the vCPUs, as a percentage of all of them together "
                                             "(100 = every vCPU busy)."},
            "delay_percent": {**_R, "description": "Time the vCPUs were ready to run but waited for a host CPU "
                                                   "(steal time as the guest sees it), same scale as percent; "
                                                   "null when the host does not report it."},
            "host_percent": {**_R, "description": "CPU time of the whole QEMU process (vCPUs, emulation, I/O) "
                                                  "as a percentage of one host CPU."},
            "time_ns": {**_N, "description": "Total CPU time of the QEMU process, in nanoseconds."}}},
        "memory": {"type": "object", "description": "Memory in bytes; guest figures are null unless the "
                                                    "guest runs a virtio balloon driver reporting them.",
                   "properties": {
                       "assigned": {**_N, "description": "Memory the balloon currently gives the guest."},
                       "maximum": {**_N, "description": "The VM's configured memory."},
                       "rss": {**_N, "description": "Host memory the QEMU process occupies."},
                       "available": {**_N, "description": "Memory the guest sees (guest-reported)."},
                       "unused": {**_N, "description": "Memory the guest leaves unused (guest-reported)."},
                       "used": {**_N, "description": "available - unused (guest-reported)."}}},
        "disks": {"type": "array", "items": _DISK, "description": "Per disk."},
        "nics": {"type": "array", "items": _NIC, "description": "Per NIC."},
    },
}
IDS: dict[str, Any] = {
    "title": "ids", "type": ["array", "null"], "default": None, "items": {"type": "integer"},
    "description": "VM ids to report; null for every running VM the caller may see.",
}
STATS_RESULT: dict[str, Any] = {
    "title": "result", "type": "array", "items": STATS_ENTRY,
    "description": "The latest sample of each requested VM that is running (stopped VMs are left out).",
}
HISTORY_ID: dict[str, Any] = {"title": "id", "type": "integer", "description": "VM id."}
SINCE: dict[str, Any] = {
    "title": "since", "type": "number", "default": 0,
    "description": "Unix time; only points after it are returned (0: the whole hour kept).",
}
_POINT_DESCRIPTIONS = {
    "time": "Unix time of the sample.", "cpu_percent": "cpu.percent of the sample.",
    "memory_rss": "Host memory of the QEMU process, bytes.", "memory_used": "Guest-reported used memory, bytes.",
    "disk_read_bytes_per_s": "All disks together.", "disk_write_bytes_per_s": "All disks together.",
    "net_rx_bytes_per_s": "All NICs together.", "net_tx_bytes_per_s": "All NICs together.",
}
HISTORY_RESULT: dict[str, Any] = {
    "title": "result", "type": "array", "description": "Points of the last hour, oldest first, one per interval "
                                                      "while the VM ran.",
    "items": {"type": "object", "description": "One sample, summarised.",
              "properties": {k: {"type": "number" if k == "time" else ["number", "null"],
                                 "description": _POINT_DESCRIPTIONS[k]} for k in HISTORY_FIELDS}},
}
def read_own(conn: libvirt.virConnect, names: Collection[str]) -> list[tuple[str, dict[str, Any]]]:
    """One bulk read of the running domains among `names` (blocking; runs in a libvirt thread).

    getAllDomainStats would ask the QEMU of every running domain of the libvirtd (another daemon's, virsh's):
    listing the running domains costs libvirtd no QEMU query, and domainListGetStats then asks only ours.
    """
    ours = [dom for dom in conn.listAllDomains(libvirt.VIR_CONNECT_LIST_DOMAINS_ACTIVE) if dom.name() in names]
    if not ours:
        return []
    # A domain that stopped since the listing comes back with its state alone: it is no longer running.
    return [(dom.name(), stats) for dom, stats in conn.domainListGetStats(ours, STATS_KINDS)
            if stats.get("state.state") != libvirt.VIR_DOMAIN_SHUTOFF]


def scoped_view(middleware: "Middleware", payload: dict[str, Any], credentials: Credentials) -> dict[str, Any] | None:
    """A vm.stats message for scoped credentials: only the VMs they may read."""
    policy = middleware.policy
    fields = payload.get("fields") or {}
    if policy is None:
        return None
    vms = [v for v in fields.get("vms", ()) if policy.visible("vm.query", {"id": v["id"]}, credentials)]
    return {**payload, "fields": {**fields, "vms": vms}} if vms else None


EVENT = EventSpec(STATS_EVENT, "Live statistics of every running VM the subscriber may see, one message per "
                               "interval: fields {time, interval, vms: [vm.get_stats entries]}.", READ,
                  scoped_view, replay=False)


class StatsHost(Protocol):
    """What the mixin needs of the vm service."""

    middleware: "Middleware"
    hypervisor: Hypervisor

    async def stored_vms(self) -> dict[int, dict[str, Any]]: ...

    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]: ...


class Sampler:
    """The loop that feeds the table and sends vm.stats."""

    def __init__(self, host: StatsHost) -> None:
        self.host = host
        self.table = StatsTable()
        self.samples = 0
        self.last_cost = 0.0

    async def sample(self) -> dict[int, dict[str, Any]]:
        """One interval: one libvirt call, rates, history, one event."""
        hypervisor = self.host.hypervisor
        if hypervisor.conn is None:
            return {}
        vms = await self.host.stored_vms()
        ours = {domain_name(vm_id, r["name"]): (vm_id, r["name"]) for vm_id, r in vms.items()}
        raw = await hypervisor.run_bulk(read_own, ours.keys())
        entries = self.table.feed((*ours[name], stats) for name, stats in raw)
        self.table.forget(vms)
        self.samples += 1
        self.host.middleware.send_event(STATS_EVENT, "CHANGED", fields={
            "time": max((e["time"] for e in entries.values()), default=None),
            "interval": self.table.interval, "vms": list(entries.values())})
        return entries

    async def run(self) -> None:
        """Sample every interval until cancelled; a failed sample is logged and the loop goes on."""
        loop = asyncio.get_running_loop()
        while True:
            began = loop.time()
            try:
                await self.sample()
            except asyncio.CancelledError:
                raise
            except Exception as e:
                logger.warning("VM statistics sample failed: %s", e)
            self.last_cost = loop.time() - began
            await asyncio.sleep(max(0.05, self.table.interval - self.last_cost))


async def get_stats(vms: "VMRecords", sampler: Sampler, ids: list[int] | None, *,
                    app: "RpcConnection | None" = None) -> list[Any]:
    """The latest statistics of running VMs (CPU, memory, per-disk and per-NIC counters and rates),
    sampled every 2 seconds by the daemon; the same entries the vm.stats event carries."""
    latest: Mapping[int, dict[str, Any]] = sampler.table.latest
    # A VM that stopped since the last sample is left out at once.
    rows = [latest[i] for i in (sorted(latest) if ids is None else dict.fromkeys(ids)) if i in latest
            and vms.hypervisor.status(domain_name(i, latest[i]["name"])).state.active]
    if app is None:
        return rows
    return [r for r in rows if vms.middleware.visible_rows("vm.query", READ, [{"id": r["id"]}],
                                                              app.credentials)]


async def get_stats_history(vms: "VMRecords", sampler: Sampler, id_: int, since: float, *,
                            app: "RpcConnection | None" = None) -> list[dict[str, Any]]:
    """The VM's statistics of the last hour (one point per interval while it ran), for a graph that
    shows at once; follow it live with the vm.stats event."""
    await vms.get_instance(id_, app=app)
    points: list[dict[str, Any]] = sampler.table.since(id_, since)
    return points
