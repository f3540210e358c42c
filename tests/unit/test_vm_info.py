"""Pure pieces of vm info and memory: display views, QEMU logs, memory arithmetic."""
from __future__ import annotations

import asyncio
import errno
import os
import re
from pathlib import Path
from typing import Any

import psutil
import pytest

from middlewared.errors import CallError
from middlewared.pipe import OutputPipe
from middlewared.plugins.vm import info, memory
from middlewared.plugins.vm.info import display_view
from middlewared.plugins.vm.memory import MiB, available_bytes, requested_bytes, ungrown_bytes, vmemory_in_use



def display(id_: int, **attributes: Any) -> dict[str, Any]:
    return {"id": id_, "vm": 1, "order": 1000, "attributes": {"dtype": "DISPLAY", **attributes}}


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
    await memory.check_memory(host, {"name": "small", "memory": 1, "min_memory": None}, False)
    huge = psutil.virtual_memory().total // MiB
    with pytest.raises(CallError) as e:
        await memory.check_memory(host, {"name": "big", "memory": huge, "min_memory": None}, True)
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
    assert await memory.get_available_memory(host, False) == 0
    assert await memory.get_available_memory(host, True) > 0
