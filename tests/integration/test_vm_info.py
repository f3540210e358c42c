"""vm.* host facts, choices, display helpers, memory and QEMU logs against the real daemon and libvirtd."""
from __future__ import annotations

import errno
import os
import re
import socket
import uuid
from typing import Any, AsyncIterator

import aiohttp
import pytest

from tests.support import unique, Daemon, Rpc, RpcError

pytestmark = pytest.mark.timeout(300)

INFO_METHODS = ["random_mac", "port_wizard", "maximum_supported_vcpus", "virtualization_details",
                "bootloader_options", "bootloader_ovmf_choices", "cpu_model_choices", "resolution_choices",
                "guest_architecture_and_machine_choices", "get_display_devices", "get_display_web_uri",
                "log_file_download", "log_file_path", "get_available_memory", "get_vmemory_in_use"]
MISSING = 999999


async def expect_missing(rpc: Rpc, method: str, *params: Any) -> None:
    """Call and expect the call error of a failed lookup (-32001, ENOENT), which clients read errno from."""
    with pytest.raises(RpcError) as e:
        await rpc.call(method, *params)
    assert (e.value.code, e.value.errno) == (-32001, errno.ENOENT), e.value.error


async def expect_invalid(rpc: Rpc, method: str, *params: Any, errno_: int = errno.EINVAL) -> RpcError:
    """Call and expect a -32602 whose extra carries errno_."""
    with pytest.raises(RpcError) as e:
        await rpc.call(method, *params)
    assert e.value.code == -32602, e.value.error
    assert any(item[2] == errno_ for item in e.value.extra), e.value.extra
    return e.value


async def test_methods_are_published(unix_rpc: Rpc) -> None:
    methods = await unix_rpc.call("core.get_methods")
    for short in INFO_METHODS:
        assert f"vm.{short}" in methods, short
    assert methods["vm.log_file_download"]["job"] is True
    assert methods["vm.log_file_download"]["pipes"] == ["output"]
    assert methods["vm.cpu_model_choices"]["roles"] == ["VM_READ", "READONLY_ADMIN"]
    assert methods["vm.random_mac"]["roles"] == ["VM_READ"]


async def test_random_mac(unix_rpc: Rpc) -> None:
    macs = {await unix_rpc.call("vm.random_mac") for _ in range(5)}
    assert len(macs) == 5
    assert all(re.fullmatch(r"00:a0:98(:[0-9a-f]{2}){3}", mac) for mac in macs)


async def test_random_mac_takes_no_arguments(unix_rpc: Rpc) -> None:
    await expect_invalid(unix_rpc, "vm.random_mac", 1)


async def test_port_wizard_skips_listening_ports(unix_rpc: Rpc, daemon: Daemon) -> None:
    first = await unix_rpc.call("vm.port_wizard")
    assert 5900 <= first["port"] < first["web"]
    assert {first["port"], first["web"]}.isdisjoint({6000, daemon.port})
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as busy:
        busy.bind(("127.0.0.1", first["port"]))
        busy.listen()
        second = await unix_rpc.call("vm.port_wizard")
    assert first["port"] not in (second["port"], second["web"])


async def test_maximum_supported_vcpus(unix_rpc: Rpc) -> None:
    assert await unix_rpc.call("vm.maximum_supported_vcpus") >= 1


async def test_virtualization_details(unix_rpc: Rpc) -> None:
    details = await unix_rpc.call("vm.virtualization_details")
    assert set(details) == {"supported", "error"}
    assert (details["error"] is None) == details["supported"]
    if os.path.exists("/sys/module/kvm_pvm"):
        # This host's KVM (nested kvm_pvm) cannot run real guests: the daemon runs them with TCG.
        assert details["supported"] is False and "KVM" in details["error"]


async def test_bootloader_options(unix_rpc: Rpc) -> None:
    assert await unix_rpc.call("vm.bootloader_options") == {"UEFI": "UEFI", "UEFI_CSM": "Legacy BIOS"}


async def test_bootloader_ovmf_choices(unix_rpc: Rpc) -> None:
    choices = await unix_rpc.call("vm.bootloader_ovmf_choices")
    expected = {f for f in os.listdir("/usr/share/OVMF") if re.match(r"^OVMF_CODE.*\.fd$", f)}
    assert choices == {f: f for f in expected}
    assert "OVMF_CODE.fd" in choices and "OVMF_VARS.fd" not in choices


async def test_cpu_model_choices(unix_rpc: Rpc) -> None:
    choices = await unix_rpc.call("vm.cpu_model_choices")
    assert "qemu64" in choices and all(k == v for k, v in choices.items())
    assert await unix_rpc.call("vm.cpu_model_choices") == choices  # cached, same answer


async def test_resolution_choices(unix_rpc: Rpc) -> None:
    choices = await unix_rpc.call("vm.resolution_choices")
    assert choices["1024x768"] == "1024x768" and len(choices) == 10


async def test_guest_architecture_and_machine_choices(unix_rpc: Rpc) -> None:
    choices = await unix_rpc.call("vm.guest_architecture_and_machine_choices")
    assert "q35" in choices["x86_64"] and "pc" in choices["x86_64"]


async def test_get_display_devices(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    assert await unix_rpc.call("vm.get_display_devices", vm["id"]) == []


async def test_get_display_devices_errors(unix_rpc: Rpc) -> None:
    await expect_missing(unix_rpc, "vm.get_display_devices", MISSING)
    await expect_invalid(unix_rpc, "vm.get_display_devices", "one")


async def test_display_devices_hide_passwords(unix_rpc: Rpc) -> None:
    display = {"attributes": {"dtype": "DISPLAY", "type": "SPICE", "password": "s3cret", "web": True}}
    created = await unix_rpc.call("vm.create", {"name": unique("disp"), "memory": 64, "autostart": False,
                                                "devices": [display]})
    try:
        [device] = await unix_rpc.call("vm.get_display_devices", created["id"])
        assert "password" not in device["attributes"] and device["attributes"]["password_configured"] is True
        answer = await unix_rpc.call("vm.get_display_web_uri", created["id"], "h")
        assert answer == {"error": "VM is not running", "uri": None}
    finally:
        await unix_rpc.call("vm.delete", created["id"], {"force": True})


async def test_get_display_web_uri_without_display(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    answer = await unix_rpc.call("vm.get_display_web_uri", vm["id"], "nas.local", {"protocol": "HTTPS"})
    assert answer == {"error": "Display device is not configured for this VM", "uri": None}


async def test_get_display_web_uri_errors(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    await expect_missing(unix_rpc, "vm.get_display_web_uri", MISSING)
    await expect_invalid(unix_rpc, "vm.get_display_web_uri", vm["id"], "h", {"protocol": "FTP"})
    await expect_invalid(unix_rpc, "vm.get_display_web_uri", vm["id"], 5)


async def test_get_available_memory(unix_rpc: Rpc) -> None:
    assert await unix_rpc.call("vm.get_available_memory") >= 0
    assert await unix_rpc.call("vm.get_available_memory", True) > 0


async def test_get_available_memory_errors(unix_rpc: Rpc) -> None:
    await expect_invalid(unix_rpc, "vm.get_available_memory", "yes")


async def test_get_vmemory_in_use(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    in_use = await unix_rpc.call("vm.get_vmemory_in_use")
    assert set(in_use) == {"RNP", "PRD", "RPRD"} and all(v >= 0 for v in in_use.values())


async def test_start_refuses_a_guest_the_host_cannot_hold(unix_rpc: Rpc) -> None:
    name = unique("huge")
    created = await unix_rpc.call("vm.create", {"name": name, "memory": 64 * 1024 * 1024, "autostart": False})
    try:
        with pytest.raises(RpcError) as e:
            await unix_rpc.call("vm.start", created["id"])
        assert e.value.code == -32001 and e.value.errno == errno.ENOMEM
        assert e.value.reason == f"[ENOMEM] Cannot guarantee memory for guest {name}"
    finally:
        await unix_rpc.call("vm.delete", created["id"], {"force": True})


async def download(rpc: Rpc, daemon: Daemon, vm_id: int) -> bytes:
    _, url = await rpc.call("core.download", "vm.log_file_download", [vm_id], "qemu.log")
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{daemon.port}{url}") as r:
            assert r.status == 200
            return await r.read()


async def test_log_of_a_vm_never_started(unix_rpc: Rpc, daemon: Daemon, vm: dict[str, Any]) -> None:
    assert await unix_rpc.call("vm.log_file_path", vm["id"]) is None
    assert await download(unix_rpc, daemon, vm["id"]) == b""


async def test_log_and_memory_of_a_running_vm(unix_rpc: Rpc, daemon: Daemon, vm: dict[str, Any]) -> None:
    await unix_rpc.call("vm.start", vm["id"])
    try:
        path = await unix_rpc.call("vm.log_file_path", vm["id"])
        assert path == f"/var/log/libvirt/qemu/{vm['id']}_{vm['name']}.log"
        log = await download(unix_rpc, daemon, vm["id"])
        assert b"qemu-system-x86_64" in log and f"guest={vm['id']}_{vm['name']}".encode() in log
        in_use = await unix_rpc.call("vm.get_vmemory_in_use")
        assert in_use["RNP"] >= 64 * 1024 * 1024  # running, not autostart
    finally:
        await unix_rpc.call("vm.poweroff", vm["id"])


async def test_log_file_errors(unix_rpc: Rpc) -> None:
    await expect_missing(unix_rpc, "vm.log_file_path", MISSING)
    await expect_invalid(unix_rpc, "vm.log_file_path", None)
    await expect_invalid(unix_rpc, "vm.log_file_download", "x")
    # Output-pipe jobs run through core.download; the job for a missing VM fails with ENOENT.
    job_id, _ = await unix_rpc.call("core.download", "vm.log_file_download", [MISSING], "qemu.log")
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    await expect_missing(unix_rpc, "core.job_wait", job_id)
