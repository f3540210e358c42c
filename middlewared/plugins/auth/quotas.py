"""CPU and memory quotas of VM groups: a group's quota bounds the VMs of its whole subtree, and a group's
quota may not exceed the one its nearest ancestor with a quota has."""
from __future__ import annotations

import sqlite3
from dataclasses import dataclass
from typing import Iterable, Mapping

KINDS = ("cpus", "memory_mib")


@dataclass(frozen=True)
class Usage:
    """What VMs take: virtual CPUs (sockets x cores x threads) and memory in MiB."""

    cpus: int = 0
    memory_mib: int = 0

    def __add__(self, other: "Usage") -> "Usage":
        return Usage(self.cpus + other.cpus, self.memory_mib + other.memory_mib)

    def get(self, kind: str) -> int:
        return self.cpus if kind == "cpus" else self.memory_mib


def path_up(parents: Mapping[int, int | None], group: int | None) -> list[int]:
    """A group and its ancestors, nearest first."""
    out: list[int] = []
    while group is not None and group in parents and group not in out:
        out.append(group)
        group = parents[group]
    return out


def excess(parents: Mapping[int, int | None], quotas: Mapping[int, Mapping[str, int | None]],
           usage: Mapping[int, Usage], group: int | None, added: Usage) -> str | None:
    """Why adding a VM's usage to a group would break its or an ancestor's quota (None when it fits).

    usage: what the VMs directly in each group take now (the VM being changed left out).
    """
    for ancestor in path_up(parents, group):
        subtree = [g for g in parents if ancestor in path_up(parents, g)]
        total = sum((usage.get(g, Usage()) for g in subtree), Usage()) + added
        for kind in KINDS:
            limit = quotas.get(ancestor, {}).get(kind)
            if limit is not None and total.get(kind) > limit:
                return f"the {kind} quota of group {ancestor} is {limit}; its VMs would use {total.get(kind)}"
    return None


def above_parent(parents: Mapping[int, int | None], quotas: Mapping[int, Mapping[str, int | None]],
                 parent: int | None, wanted: Mapping[str, int | None]) -> str | None:
    """Why a quota may not be set below this parent (it would surpass an ancestor's), or None."""
    for kind in KINDS:
        value = wanted.get(kind)
        if value is None:
            continue
        for ancestor in path_up(parents, parent):
            limit = quotas.get(ancestor, {}).get(kind)
            if limit is not None and value > limit:
                return f"the {kind} quota {value} surpasses group {ancestor}'s ({limit})"
    return None


def usage_of(vms: Iterable[Mapping[str, int]]) -> Usage:
    """What some VM records (vcpus, cores, threads, memory) take."""
    return sum((Usage(vm["vcpus"] * vm["cores"] * vm["threads"], vm["memory"]) for vm in vms), Usage())


def problem(db: sqlite3.Connection, group: int | None, added: Usage = Usage(), leaving: tuple[int, ...] = ()) \
        -> str | None:
    """Whether the VMs as stored (plus `added` in group, minus the VMs `leaving`) break a quota on group's path.

    Runs inside the transaction that changes VMs or memberships, so that concurrent changes cannot both fit.
    """
    rows = db.execute("SELECT v.id, v.vcpus, v.cores, v.threads, v.memory, m.vm_group FROM vm_vm v"
                      " JOIN vm_group_member m ON m.vm = v.id").fetchall()
    groups = db.execute("SELECT id, parent, quota_cpus, quota_memory_mib FROM vm_group").fetchall()
    parents = {g[0]: g[1] for g in groups}
    limits = {g[0]: {"cpus": g[2], "memory_mib": g[3]} for g in groups}
    usage: dict[int, Usage] = {}
    for vm_id, vcpus, cores, threads, memory, vm_group in rows:
        if vm_id not in leaving:
            usage[vm_group] = usage.get(vm_group, Usage()) + Usage(vcpus * cores * threads, memory)
    return excess(parents, limits, usage, group, added)
