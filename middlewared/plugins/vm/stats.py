"""Live VM statistics: one bulk libvirt read per interval turned into rates, and an hour of history per VM.

libvirt's ``virConnectGetAllDomainStats`` returns, for every running domain at once, flat counters such as
``cpu.time`` (ns), ``vcpu.<n>.time``, ``balloon.rss`` (KiB), ``block.<n>.wr.bytes`` and ``net.<n>.rx.pkts``
(https://libvirt.org/html/libvirt-libvirt-domain.html#virConnectGetAllDomainStats). Everything here is pure:
the sampler hands in the raw records and a monotonic time, and gets back per-VM dicts with totals and
per-second rates computed against the previous sample of the same domain.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

INTERVAL = 2.0
HISTORY_SECONDS = 3600
KIB = 1024

_DISK_COUNTERS = (("rd.bytes", "read_bytes"), ("wr.bytes", "write_bytes"),
                  ("rd.reqs", "read_ops"), ("wr.reqs", "write_ops"))
_NET_COUNTERS = (("rx.bytes", "rx_bytes"), ("tx.bytes", "tx_bytes"),
                 ("rx.pkts", "rx_packets"), ("tx.pkts", "tx_packets"))
# The columns of one history point, as vm.get_stats_history returns them.
HISTORY_FIELDS = ("time", "cpu_percent", "memory_rss", "memory_used", "disk_read_bytes_per_s",
                  "disk_write_bytes_per_s", "net_rx_bytes_per_s", "net_tx_bytes_per_s")


def _kib(raw: Mapping[str, Any], key: str) -> int | None:
    value = raw.get(key)
    return None if value is None else int(value) * KIB


def _rate(now: int | None, before: int | None, seconds: float) -> float | None:
    if now is None or before is None or seconds <= 0 or now < before:
        return None  # first sample, or a counter that restarted (the domain was restarted)
    return round((now - before) / seconds, 3)


def _indexed(raw: Mapping[str, Any], prefix: str) -> Iterable[tuple[str, dict[str, int]]]:
    """(name, counters) of each ``<prefix>.<n>.*`` group (block or net), in libvirt's order."""
    for index in range(int(raw.get(f"{prefix}.count", 0))):
        head = f"{prefix}.{index}."
        name = raw.get(f"{head}name")
        if name is None:
            continue
        yield str(name), {k[len(head):]: v for k, v in raw.items() if k.startswith(head) and k != f"{head}name"}


def _vcpu_sum(raw: Mapping[str, Any], what: str) -> int | None:
    """A per-vCPU counter (ns) summed over the vCPUs: ``time`` spent running guest code, ``delay`` spent
    ready to run but waiting for a host CPU (the guest's steal time)."""
    count = raw.get("vcpu.current")
    if not count:
        return None
    total = 0
    for index in range(int(count)):
        value = raw.get(f"vcpu.{index}.{what}")
        if value is None:
            return None
        total += int(value)
    return total


@dataclass
class Raw:
    """The counters of one domain at one moment, as kept for the next rate computation."""

    at: float
    cpu_time: int | None
    vcpu_time: int | None
    vcpu_delay: int | None
    disks: dict[str, dict[str, int]]
    nets: dict[str, dict[str, int]]


def parse(raw: Mapping[str, Any], at: float) -> Raw:
    """The counters this module uses from one domain's getAllDomainStats record."""
    cpu = raw.get("cpu.time")
    return Raw(at, None if cpu is None else int(cpu), _vcpu_sum(raw, "time"), _vcpu_sum(raw, "delay"),
               {name: c for name, c in _indexed(raw, "block")}, {name: c for name, c in _indexed(raw, "net")})


def _devices(now: dict[str, dict[str, int]], before: dict[str, dict[str, int]] | None, seconds: float,
             counters: tuple[tuple[str, str], ...], extra: tuple[str, ...] = ()) -> list[dict[str, Any]]:
    out = []
    for name, values in now.items():
        prior = (before or {}).get(name, {})
        item: dict[str, Any] = {"name": name}
        for key in extra:
            item[key] = values.get(key)
        for key, label in counters:
            value = values.get(key)
            item[label] = None if value is None else int(value)
            item[f"{label}_per_s"] = _rate(item[label], prior.get(key), seconds)
        out.append(item)
    return out


def _total(items: list[dict[str, Any]], key: str) -> float | None:
    values = [i[key] for i in items if i[key] is not None]
    return round(sum(values), 3) if values else None


def compute(vm_id: int, name: str, raw: Mapping[str, Any], now: Raw, before: Raw | None,
            wall: float) -> dict[str, Any]:
    """One VM's statistics entry (vm.get_stats and the vm.stats event) from its raw record."""
    seconds = now.at - before.at if before is not None else 0.0
    vcpus = int(raw.get("vcpu.current") or 0)
    cpu_rate = _rate(now.vcpu_time, before.vcpu_time if before else None, seconds)
    host_rate = _rate(now.cpu_time, before.cpu_time if before else None, seconds)
    delay_rate = _rate(now.vcpu_delay, before.vcpu_delay if before else None, seconds)
    rss = _kib(raw, "balloon.rss")
    available, unused = _kib(raw, "balloon.available"), _kib(raw, "balloon.unused")
    disks = _devices(now.disks, before.disks if before else None, seconds, _DISK_COUNTERS, ("path",))
    nets = _devices(now.nets, before.nets if before else None, seconds, _NET_COUNTERS)
    return {
        "id": vm_id, "name": name, "time": round(wall, 3), "interval": round(seconds, 3) or None,
        "cpu": {
            "vcpus": vcpus,
            # Of the VM's vCPUs together: 100 means every vCPU busy all the time (Proxmox' "CPU usage").
            "percent": None if cpu_rate is None or not vcpus else round(cpu_rate / 1e7 / vcpus, 2),
            # Ready but waiting for a host CPU: percent + delay_percent is what the guest asked for.
            "delay_percent": None if delay_rate is None or not vcpus else round(delay_rate / 1e7 / vcpus, 2),
            # QEMU's whole process (vCPUs, emulation, I/O threads) against one host CPU.
            "host_percent": None if host_rate is None else round(host_rate / 1e7, 2),
            "time_ns": now.cpu_time,
        },
        "memory": {
            "assigned": _kib(raw, "balloon.current"), "maximum": _kib(raw, "balloon.maximum"), "rss": rss,
            "available": available, "unused": unused,
            "used": None if available is None or unused is None else available - unused,
        },
        "disks": disks,
        "nics": nets,
    }


def history_point(entry: Mapping[str, Any]) -> tuple[Any, ...]:
    """The compact history form of an entry (HISTORY_FIELDS): what a graph of the VM needs."""
    disks, nics = entry["disks"], entry["nics"]
    return (entry["time"], entry["cpu"]["percent"], entry["memory"]["rss"], entry["memory"]["used"],
            _total(disks, "read_bytes_per_s"), _total(disks, "write_bytes_per_s"),
            _total(nics, "rx_bytes_per_s"), _total(nics, "tx_bytes_per_s"))


@dataclass
class StatsTable:
    """The latest entry and the history of every running VM, fed one bulk sample per interval."""

    interval: float = INTERVAL
    history_seconds: int = HISTORY_SECONDS
    latest: dict[int, dict[str, Any]] = field(default_factory=dict)
    history: dict[int, deque[tuple[Any, ...]]] = field(default_factory=dict)
    _raw: dict[int, Raw] = field(default_factory=dict)

    @property
    def depth(self) -> int:
        return max(1, int(self.history_seconds / self.interval))

    def feed(self, records: Iterable[tuple[int, str, Mapping[str, Any]]], at: float | None = None,
             wall: float | None = None) -> dict[int, dict[str, Any]]:
        """Take one sample: (vm id, name, raw stats) of every running VM. VMs absent from it stopped:
        their live entry goes, their history stays (a restarted VM's graph continues)."""
        at = time.monotonic() if at is None else at
        wall = time.time() if wall is None else wall
        fresh: dict[int, dict[str, Any]] = {}
        raws: dict[int, Raw] = {}
        for vm_id, name, raw in records:
            now = parse(raw, at)
            entry = compute(vm_id, name, raw, now, self._raw.get(vm_id), wall)
            raws[vm_id], fresh[vm_id] = now, entry
            points = self.history.get(vm_id)
            if points is None or points.maxlen != self.depth:
                points = self.history[vm_id] = deque(points or (), maxlen=self.depth)
            points.append(history_point(entry))
        self._raw, self.latest = raws, fresh
        return fresh

    def since(self, vm_id: int, since: float) -> list[dict[str, Any]]:
        """History points of a VM newer than the Unix time `since`, oldest first."""
        return [dict(zip(HISTORY_FIELDS, p)) for p in self.history.get(vm_id, ()) if p[0] > since]

    def forget(self, keep: Iterable[int]) -> None:
        """Drop the history of VMs that no longer exist."""
        kept = set(keep)
        for vm_id in [v for v in self.history if v not in kept]:
            del self.history[vm_id]
