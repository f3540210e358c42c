"""The figures /metrics exposes, gathered into a snapshot and handed to prometheus_client as metric families.

The snapshot is taken on the event loop (VM records, the latest statistics sample, jobs, connections), then
rendered by prometheus_client's own text exposition code: nothing here formats the wire text.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Iterable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from middlewared.call_stats import MethodCalls
from middlewared.job import JobState
from middlewared.plugins.vm.model import VMState

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

PREFIX = "middlewared"
_MEMORY_KINDS = ("assigned", "maximum", "rss", "available", "unused", "used")
_DISK = (("read_bytes", "disk_read_bytes", "Bytes read"), ("write_bytes", "disk_write_bytes", "Bytes written"),
         ("read_ops", "disk_read_ops", "Read requests"), ("write_ops", "disk_write_ops", "Write requests"))
_NIC = (("rx_bytes", "net_receive_bytes", "Bytes received"), ("tx_bytes", "net_transmit_bytes", "Bytes sent"),
        ("rx_packets", "net_receive_packets", "Packets received"),
        ("tx_packets", "net_transmit_packets", "Packets sent"))


@dataclass
class Snapshot:
    """What one scrape shows."""

    vms: list[dict[str, Any]] = field(default_factory=list)       # {id, name, state}
    stats: dict[int, dict[str, Any]] = field(default_factory=dict)  # latest vm.get_stats entries by VM id
    daemon: bool = False                                           # the daemon's own figures included
    calls: dict[str, MethodCalls] = field(default_factory=dict)
    jobs: Counter[str] = field(default_factory=Counter)
    connections: int = 0
    subscriptions: Counter[str] = field(default_factory=Counter)
    sample_seconds: float = 0.0


def daemon_figures(middleware: "Middleware", snapshot: Snapshot) -> None:
    """Fill in calls, jobs, connections and event subscriptions."""
    snapshot.daemon = True
    snapshot.calls = dict(middleware.call_stats.methods)
    snapshot.jobs = Counter(job.state.value for job in middleware.jobs.jobs.values())
    snapshot.connections = len(middleware.connections)
    for conn in middleware.connections:
        snapshot.subscriptions.update(getattr(conn, "subscriptions", {}).values())


def _vm_labels(vm: dict[str, Any]) -> list[str]:
    return [str(vm["id"]), vm["name"]]


class SnapshotCollector(Collector):
    """A prometheus_client collector over one snapshot."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        yield from self._vms()
        if self.snapshot.daemon:
            yield from self._daemon()

    def _vms(self) -> Iterable[Metric]:
        s = self.snapshot
        running = GaugeMetricFamily(f"{PREFIX}_vm_running", "1 when the VM runs (or is suspended), else 0.",
                                    labels=["id", "name"])
        for vm in s.vms:
            running.add_metric(_vm_labels(vm), 1 if VMState(vm["state"]).active else 0)
        cpu = CounterMetricFamily(f"{PREFIX}_vm_cpu_seconds", "CPU time of the VM's QEMU process.",
                                  labels=["id", "name"])
        percent = GaugeMetricFamily(f"{PREFIX}_vm_cpu_percent", "Busy time of the VM's vCPUs over the last "
                                    "interval, percent of all its vCPUs.", labels=["id", "name"])
        memory = GaugeMetricFamily(f"{PREFIX}_vm_memory_bytes", "VM memory by kind (assigned, maximum, rss; "
                                   "available, unused, used when the guest reports them).",
                                   labels=["id", "name", "kind"])
        disks = {key: CounterMetricFamily(f"{PREFIX}_vm_{name}", f"{text} by the VM per disk.",
                                          labels=["id", "name", "device"]) for key, name, text in _DISK}
        nics = {key: CounterMetricFamily(f"{PREFIX}_vm_{name}", f"{text} by the VM per NIC.",
                                         labels=["id", "name", "interface"]) for key, name, text in _NIC}
        for entry in s.stats.values():
            labels = _vm_labels(entry)
            if entry["cpu"]["time_ns"] is not None:
                cpu.add_metric(labels, entry["cpu"]["time_ns"] / 1e9)
            if entry["cpu"]["percent"] is not None:
                percent.add_metric(labels, entry["cpu"]["percent"])
            for kind in _MEMORY_KINDS:
                if entry["memory"][kind] is not None:
                    memory.add_metric([*labels, kind], entry["memory"][kind])
            for families, items in ((disks, entry["disks"]), (nics, entry["nics"])):
                for item in items:
                    for key, family in families.items():
                        if item[key] is not None:
                            family.add_metric([*labels, item["name"]], item[key])
        return [running, cpu, percent, memory, *disks.values(), *nics.values()]

    def _daemon(self) -> Iterable[Metric]:
        s = self.snapshot
        calls = CounterMetricFamily(f"{PREFIX}_calls", "API calls answered, per method.", labels=["method"])
        errors = CounterMetricFamily(f"{PREFIX}_call_errors", "API calls that failed, per method.",
                                     labels=["method"])
        latency = HistogramMetricFamily(f"{PREFIX}_call_duration_seconds", "Time from a call's arrival to its "
                                        "answer, per method.", labels=["method"])
        for method, entry in sorted(s.calls.items()):
            calls.add_metric([method], entry.count)
            errors.add_metric([method], entry.errors)
            latency.add_metric([method], entry.cumulative(), entry.seconds)
        jobs = GaugeMetricFamily(f"{PREFIX}_jobs", "Jobs the daemon holds, by state.", labels=["state"])
        for state in JobState:
            jobs.add_metric([state.value], s.jobs.get(state.value, 0))
        connections = GaugeMetricFamily(f"{PREFIX}_connections", "Open API connections (WebSocket).",
                                        value=s.connections)
        subscribers = GaugeMetricFamily(f"{PREFIX}_event_subscriptions", "Event subscriptions, per event.",
                                        labels=["event"])
        for event, count in sorted(s.subscriptions.items()):
            subscribers.add_metric([event], count)
        sample = GaugeMetricFamily(f"{PREFIX}_stats_sample_seconds", "Time the last VM statistics sample took.",
                                   value=s.sample_seconds)
        return [calls, errors, latency, jobs, connections, subscribers, sample]
