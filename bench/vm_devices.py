"""bench vm, the vm.device.create phase: one NIC added to each VM the bench defined, beside libvirt's own define of
the same domain with the NIC.

A device create whose cost grows with the number of VMs or devices shows as a last tenth slower than the first, or
as a rate far below the raw define's.
"""
from __future__ import annotations

import time
from typing import TYPE_CHECKING

import libvirt

from bench.common import RpcClient, Table, fmt, ratio

if TYPE_CHECKING:
    from bench.vm import State

NIC = {"dtype": "NIC", "type": "VIRTIO"}


async def device_create_all(client: RpcClient, conn: libvirt.virConnect, state: "State", table: Table) -> None:
    from bench.vm import CALL_TIMEOUT, IN_FLIGHT, Skip, bulk, need, raw_define_rate, tenth_rates
    need(state, "vm.device.create")
    answered: list[float] = []

    async def create(i: int) -> None:
        await client.call("vm.device.create", {"vm": state.vm_ids[i], "attributes": NIC}, timeout=CALL_TIMEOUT)
        answered.append(time.perf_counter())
    t0 = time.perf_counter()
    try:
        await create(0)
    except Exception as e:  # noqa: BLE001 - the phase is skipped with the reason
        raise Skip(f"vm.device.create failed: {type(e).__name__}: {e}") from None
    errors = await bulk(len(state.vm_ids) - 1, lambda i: create(i + 1))
    took = time.perf_counter() - t0
    rate = len(answered) / took
    # The raw baseline defines copies of a domain that now has the NIC: what libvirt does for a device create.
    raw_rate, _ = raw_define_rate(conn, state)
    table.add("vm.device.create, devices/s", fmt(rate), fmt(raw_rate), ratio(rate, raw_rate), "",
              f"{len(answered):,} NICs (one per VM, {len(state.vm_ids):,} VMs) in {took:.1f} s, {IN_FLIGHT} in "
              "flight; raw: defineXML")
    first, last = tenth_rates(t0, answered)
    table.add("  first tenth of the devices", fmt(first), fmt(raw_rate), ratio(first, raw_rate), "", "")
    table.add("  last tenth of the devices", fmt(last), fmt(raw_rate), ratio(last, raw_rate), "",
              f"last/first {last / first:.2f}" if first else "")
    if errors:
        table.note(f"vm.device.create: {len(errors)} failed, first: {errors[0]}"[:300])
