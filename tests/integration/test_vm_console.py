"""vm.console_log against the real daemon and libvirtd: a started TCG VM's serial output is readable."""
from __future__ import annotations

import asyncio
import errno
import time
from pathlib import Path
from typing import Any

import pytest

from middlewared.plugins.vm.console import last_lines, read_log
from tests.integration.test_vm_info import download
from tests.support import Daemon, Rpc, RpcError, unique

pytestmark = pytest.mark.timeout(300)

MISSING = 999999
# OVMF's boot manager reports on the serial console what it boots; without bootable devices it ends in
# its shell. Under TCG the first of these lines comes about 10 s after the start.
OVMF_MARKERS = ("BdsDxe", "UEFI Interactive Shell")


async def wait_for_console(rpc: Rpc, vm_id: int, needles: tuple[str, ...], timeout: float = 120) -> str:
    """Poll vm.console_log until it holds one of needles; return the log."""
    deadline = time.monotonic() + timeout
    while True:
        text: str = await rpc.call("vm.console_log", vm_id)
        if any(n in text for n in needles):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"none of {needles} on the console after {timeout} s:\n{text[-2000:]}")
        await asyncio.sleep(0.5)


@pytest.mark.parametrize("data, count, expected", [
    (b"a\nb\nc\n", 2, b"b\nc\n"), (b"a\nb\nc", 2, b"b\nc"), (b"a\nb\n", 5, b"a\nb\n"),
    (b"a\r\nb\r\n", 1, b"b\r\n"), (b"", 3, b""), (b"a\n", 0, b""), (b"\n\n", 1, b"\n"),
])
def test_last_lines(data: bytes, count: int, expected: bytes) -> None:
    assert last_lines(data, count) == expected


def test_read_log_tail_spans_read_blocks(tmp_path: Any) -> None:
    path = tmp_path / "console.log"
    lines = [f"line {i} ".encode() * 50 + b"\r\n" for i in range(2000)]  # ~700 KiB: many 64 KiB blocks
    path.write_bytes(b"".join(lines))
    assert read_log(str(path), 1500) == b"".join(lines[-1500:])
    assert read_log(str(path), None) == path.read_bytes()
    assert read_log(str(tmp_path / "missing.log"), 3) == b""


async def test_console_log_is_published(unix_rpc: Rpc) -> None:
    methods = await unix_rpc.call("core.get_methods")
    assert methods["vm.console_log"]["roles"] == ["VM_READ"]
    assert methods["vm.console_log"]["job"] is False


async def test_console_log_of_a_vm_never_started(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    assert await unix_rpc.call("vm.console_log", vm["id"]) == ""
    assert await unix_rpc.call("vm.console_log", vm["id"], {"tail": 5}) == ""


async def test_console_log_errors(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    for params in ([vm["id"], {"tail": -1}], [vm["id"], {"lines": 3}], ["x"]):
        with pytest.raises(RpcError) as e:
            await unix_rpc.call("vm.console_log", *params)
        assert e.value.code == -32602, e.value.error
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.console_log", MISSING)
    assert e.value.code == -32001 and e.value.errno == errno.ENOENT


async def test_started_vm_shows_firmware_output(unix_rpc: Rpc, daemon: Daemon, vm: dict[str, Any]) -> None:
    await unix_rpc.call("vm.start", vm["id"])
    try:
        text = await wait_for_console(unix_rpc, vm["id"], OVMF_MARKERS)
        # The marker may be the first complete line the firmware wrote: wait for a second one.
        for _ in range(100):
            if len(text.splitlines()) >= 2:
                break
            await asyncio.sleep(0.1)
            text = await unix_rpc.call("vm.console_log", vm["id"])
        assert len(text.splitlines()) >= 2
        # The log only grows while the guest runs: the tail, the end of the log when it was read, is in a later
        # full read (as its end, unless the firmware wrote another line meanwhile).
        tail = await unix_rpc.call("vm.console_log", vm["id"], {"tail": 2})
        assert len(tail.splitlines()) == 2
        assert tail in await unix_rpc.call("vm.console_log", vm["id"])
        assert await unix_rpc.call("vm.console_log", vm["id"], {"tail": 0}) == ""
        everything = await unix_rpc.call("vm.console_log", vm["id"], {"tail": 10 ** 6})
        assert everything.startswith(text)
        # vm.log_file_download still streams QEMU's own log, not the console.
        qemu_log = await download(unix_rpc, daemon, vm["id"])
        assert b"qemu-system-x86_64" in qemu_log and b"BdsDxe" not in qemu_log
    finally:
        await unix_rpc.call("vm.poweroff", vm["id"])


async def test_delete_removes_the_domain_logs(unix_rpc: Rpc) -> None:
    created = await unix_rpc.call("vm.create", {"name": unique("logs"), "memory": 64, "autostart": False})
    await unix_rpc.call("vm.start", created["id"])
    domain = f"{created['id']}_{created['name']}"
    console = Path("/var/log/libvirt/qemu") / f"{domain}.console.log"
    qemu_log = Path("/var/log/libvirt/qemu") / f"{domain}.log"
    assert qemu_log.exists()
    await unix_rpc.call("vm.delete", created["id"], {"force": True})
    assert not console.exists() and not qemu_log.exists()
