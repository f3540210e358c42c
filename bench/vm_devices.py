"""bench vm, the vm.device.create phase: one NIC added to each VM the bench defined, beside libvirt's own define of
the same domain with the NIC.

A device create whose cost grows with the number of VMs or devices shows as a last tenth slower than the first, or
as a rate far below the raw define's.
"""
from __future__ import annotations

import time
from typing import Callable, Sequence

from bench.common import CALL_TIMEOUT, IN_FLIGHT, RpcClient, Table, bulk, fmt, ratio, tenth_rates

NIC = {"dtype": "NIC", "type": "VIRTIO"}


async def device_create_all(client: RpcClient, vm_ids: Sequence[int], table: Table,
                            raw_define_rate: Callable[[], float], daemon_cpu: Callable[[], float]) -> None:
    """Add a NIC to each VM, 16 calls in flight; `raw_define_rate` measures defineXML of copies of a domain,
    `daemon_cpu` reads the daemon's CPU seconds so far."""
    answered: list[float] = []
    tenth = len(vm_ids) // 10
    # The daemon's CPU seconds when the answers of the first tenth begin and end, and those of the last tenth.
    cpu_marks: dict[int, float] = {}

    async def create(i: int) -> None:
        await client.call("vm.device.create", {"vm": vm_ids[i], "attributes": NIC}, timeout=CALL_TIMEOUT)
        answered.append(time.perf_counter())
        if len(answered) in (tenth, len(vm_ids) - tenth):
            cpu_marks[len(answered)] = daemon_cpu()
    cpu_marks[0] = daemon_cpu()
    t0 = time.perf_counter()
    await create(0)  # one alone first: a failing create then skips the phase with its reason
    errors = await bulk(len(vm_ids) - 1, lambda i: create(i + 1))
    took, cpu_end = time.perf_counter() - t0, daemon_cpu()
    rate = len(answered) / took
    # The first VM's domain now has the NIC: defining copies of it is what libvirt does for a device create.
    raw_rate = raw_define_rate()
    table.add("vm.device.create, devices/s", fmt(rate), fmt(raw_rate), ratio(rate, raw_rate), "",
              f"{len(answered):,} NICs (one per VM, {len(vm_ids):,} VMs) in {took:.1f} s, {IN_FLIGHT} in "
              "flight; raw: defineXML")
    first, last = tenth_rates(t0, answered)
    table.add("  first tenth of the devices", fmt(first), fmt(raw_rate), ratio(first, raw_rate), "", "")
    # A flat cost keeps the last tenth as fast as the first.
    table.add("  last tenth of the devices", fmt(last), fmt(raw_rate), ratio(last, raw_rate), "last/first >= 0.9",
              f"last/first {last / first:.2f}" if first else "")
    if tenth >= 2 and len(answered) == len(vm_ids):
        # CPU time does not depend on what else the machine runs: the growth shows even on a busy host.
        first_cpu = (cpu_marks[tenth] - cpu_marks[0]) / tenth
        last_cpu = (cpu_end - cpu_marks[len(vm_ids) - tenth]) / tenth
        table.add("  CPU per device, first tenth, ms", fmt(first_cpu * 1000, 2), "", "", "", "daemon process")
        table.add("  CPU per device, last tenth, ms", fmt(last_cpu * 1000, 2), "", "", "last/first <= 1.1",
                  f"last/first {last_cpu / first_cpu:.2f}" if first_cpu else "")
    if errors:
        table.note(f"vm.device.create: {len(errors)} failed, first: {errors[0]}"[:300])
