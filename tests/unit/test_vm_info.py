"""Pure pieces of vm info and memory: MACs, ports, capabilities, display views, memory arithmetic."""
from __future__ import annotations

import asyncio
import errno
import os
import re
from pathlib import Path
from typing import Any, cast

import psutil
import pytest

from middlewared.errors import CallError
from middlewared.pipe import OutputPipe
from middlewared.plugins.vm import info, memory
from middlewared.plugins.vm.info import (arch_machines, display_ports, display_view, format_mac, machine_max_cpus,
                                         pick_ports)
from middlewared.plugins.vm.memory import MiB, available_bytes, requested_bytes, ungrown_bytes, vmemory_in_use

CAPABILITIES = """<capabilities>
  <host><cpu><arch>x86_64</arch></cpu></host>
  <guest>
    <os_type>hvm</os_type>
    <arch name='i686'>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <domain type='qemu'/>
    </arch>
  </guest>
  <guest>
    <os_type>hvm</os_type>
    <arch name='x86_64'>
      <machine maxCpus='255'>pc-i440fx-7.2</machine>
      <machine canonical='pc-i440fx-7.2' maxCpus='255'>pc</machine>
      <machine maxCpus='288'>pc-q35-7.2</machine>
      <machine canonical='pc-q35-7.2' maxCpus='288'>q35</machine>
      <domain type='qemu'/>
      <domain type='kvm'/>
    </arch>
  </guest>
</capabilities>"""


def display(id_: int, **attributes: Any) -> dict[str, Any]:
    return {"id": id_, "vm": 1, "order": 1000, "attributes": {"dtype": "DISPLAY", **attributes}}


def nic(id_: int) -> dict[str, Any]:
    return {"id": id_, "vm": 1, "order": 1001, "attributes": {"dtype": "NIC", "mac": "00:a0:98:00:00:01"}}


# -- MAC -----------------------------------------------------------------------------------------
def test_mac_format_and_prefix() -> None:
    assert format_mac(bytes([0, 0x7F, 0xFF])) == "00:a0:98:00:7f:ff"
    with pytest.raises(ValueError):
        format_mac(b"\x01\x02")


async def test_random_macs_are_unicast_in_the_prefix_and_differ() -> None:
    macs = {await info.VMInfoMixin.random_mac(cast(Any, None)) for _ in range(50)}
    assert len(macs) > 45
    for mac in macs:
        assert re.fullmatch(r"00:a0:98(:[0-9a-f]{2}){3}", mac)
        assert int(mac.split(":")[0], 16) & 1 == 0  # unicast: the I/G bit is clear


# -- ports ---------------------------------------------------------------------------------------
def test_pick_the_two_lowest_free_ports() -> None:
    assert pick_ports(set()) == [5900, 5901]
    assert pick_ports({5900, 5901, 5903}) == [5902, 5904]


def test_pick_ports_at_the_end_of_the_range() -> None:
    assert pick_ports(set(), first=65534) == [65534, 65535]
    assert pick_ports({65535}, first=65534) == [65534]


def test_display_ports_of_all_vms() -> None:
    vms = [{"devices": [display(1, port=5900, web_port=5901), nic(2)]},
           {"devices": [display(3, port=5910, web_port=None)]},
           {"devices": []}, {}]
    assert display_ports(vms) == {5900, 5901, 5910}


# -- capabilities --------------------------------------------------------------------------------
def test_arch_machines() -> None:
    assert arch_machines(CAPABILITIES) == {
        "i686": ["pc-i440fx-7.2", "pc"],
        "x86_64": ["pc-i440fx-7.2", "pc", "pc-q35-7.2", "q35"],
    }


def test_machine_max_cpus() -> None:
    assert machine_max_cpus(CAPABILITIES, "x86_64") == 288
    assert machine_max_cpus(CAPABILITIES, "x86_64", "pc") == 255
    assert machine_max_cpus(CAPABILITIES, "i686") is None
    assert machine_max_cpus(CAPABILITIES, "aarch64") is None


# -- display -------------------------------------------------------------------------------------
def test_display_view_hides_the_password() -> None:
    device = display(1, type="SPICE", password="secret", port=5900)
    view = display_view(device)
    assert view["attributes"] == {"dtype": "DISPLAY", "type": "SPICE", "port": 5900, "password_configured": True}
    assert device["attributes"]["password"] == "secret"  # input untouched
    assert display_view(display(2, password=""))["attributes"]["password_configured"] is False
    assert display_view(display(3))["attributes"]["password_configured"] is False


# The web console's URI and errors: tests/unit/test_web_console.py.


def test_qemu_log_path() -> None:
    assert info.qemu_log_path("3_web") == "/var/log/libvirt/qemu/3_web.log"


async def read_all(pipe: OutputPipe) -> bytes:
    data = b""
    while (chunk := await pipe.read()) is not None:
        data += chunk
    return data


async def test_copy_to_pipe(tmp_path: Path) -> None:
    path = tmp_path / "log"
    content = os.urandom(3 * info.LOG_CHUNK + 17)
    path.write_bytes(content)
    pipe = OutputPipe()
    # Read concurrently, as /_download does: the pipe holds only so many chunks.
    reader = asyncio.create_task(read_all(pipe))
    await info.copy_to_pipe(str(path), pipe)
    assert await reader == content
    assert pipe.closed


async def test_copy_a_missing_file_gives_an_empty_pipe(tmp_path: Path) -> None:
    pipe = OutputPipe()
    await info.copy_to_pipe(str(tmp_path / "missing"), pipe)
    assert pipe.closed and await read_all(pipe) == b""


# -- memory --------------------------------------------------------------------------------------
def test_requested_bytes_prefers_min_memory() -> None:
    assert requested_bytes({"memory": 1024, "min_memory": None}) == 1024 * MiB
    assert requested_bytes({"memory": 1024, "min_memory": 512}) == 512 * MiB


def test_ungrown_bytes_floors_at_zero() -> None:
    assert ungrown_bytes(1024, 300 * MiB) == 724 * MiB
    assert ungrown_bytes(256, 400 * MiB) == 0  # QEMU's own overhead can exceed the guest size


def test_available_bytes() -> None:
    gib = 1024 * MiB
    assert available_bytes(10 * gib, [gib, 2 * gib], overcommit=True) == 9 * gib
    assert available_bytes(10 * gib, [gib, 2 * gib], overcommit=False) == 6 * gib
    assert available_bytes(10 * gib, [20 * gib], overcommit=False) == 0
    assert available_bytes(1001, [], overcommit=False) == 900


def test_vmemory_in_use() -> None:
    def vm(memory: int, state: str, autostart: bool) -> dict[str, Any]:
        return {"memory": memory, "autostart": autostart, "status": {"state": state}}
    vms = [vm(100, "RUNNING", True), vm(200, "RUNNING", False), vm(400, "STOPPED", True),
           vm(800, "STOPPED", False), vm(1600, "SUSPENDED", True), vm(3200, "ERROR", False)]
    assert vmemory_in_use(vms) == {"RPRD": 1700 * MiB, "RNP": 200 * MiB, "PRD": 400 * MiB}


class FakeVMs:
    """The outermost boundary of the memory mixin: VM entries as vm.query returns them."""

    def __init__(self, vms: list[dict[str, Any]]) -> None:
        self.vms = vms

    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None) -> Any:
        return self.vms

    async def active_guests(self) -> list[tuple[int, int | None]]:
        return [(vm["memory"], vm["status"]["pid"]) for vm in self.vms
                if vm["status"]["state"] in ("RUNNING", "SUSPENDED")]


async def test_check_memory() -> None:
    host = FakeVMs([])
    await memory.VMMemoryMixin.check_memory(host, {"name": "small", "memory": 1, "min_memory": None}, False)
    huge = psutil.virtual_memory().total // MiB
    with pytest.raises(CallError) as e:
        await memory.VMMemoryMixin.check_memory(host, {"name": "big", "memory": huge, "min_memory": None}, True)
    assert e.value.errno == errno.ENOMEM
    assert e.value.errmsg == "Cannot guarantee memory for guest big"


def test_running_guests_reserve_what_they_may_still_grow_into() -> None:
    # Our own process stands in for a guest's QEMU: its RSS is what the guest already holds.
    rss = psutil.Process().memory_info().rss
    mem_available, ungrown = memory._sample_host([(rss // MiB + 1024, os.getpid()), (100, None), (50, 2**22 + 1)])
    assert mem_available > 0
    assert 1023 * MiB < ungrown[0] <= 1024 * MiB
    assert ungrown[1:] == [100 * MiB, 50 * MiB]  # no pid, or no such process: the whole size


async def test_available_memory_with_overcommit_ignores_running_guests() -> None:
    host = FakeVMs([{"memory": 10**6, "status": {"state": "RUNNING", "pid": None}}])
    assert await memory.VMMemoryMixin.get_available_memory(host, False) == 0
    assert await memory.VMMemoryMixin.get_available_memory(host, True) > 0
