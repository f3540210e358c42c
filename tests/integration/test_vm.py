"""vm.* against a real libvirtd with TCG UEFI domains (no guest disk)."""
from __future__ import annotations

import asyncio
import subprocess
import tempfile
import time
import uuid
from typing import Any, AsyncIterator

import pytest

from tests.support import unique, Rpc, RpcError

pytestmark = pytest.mark.timeout(300)


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True,
                          text=True).stdout.strip()






async def test_create_defaults_and_domain(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    assert vm["vcpus"] == 1 and vm["cores"] == 1 and vm["threads"] == 1 and vm["memory"] == 64
    assert vm["bootloader"] == "UEFI" and vm["time"] == "LOCAL" and vm["shutdown_timeout"] == 5
    assert vm["status"] == {"state": "STOPPED", "pid": None, "domain_state": "SHUTOFF", "started_at": None}
    assert vm["devices"] == [] and vm["display_available"] is False and vm["uuid"]
    domain = f"{vm['id']}_{vm['name']}"
    assert virsh("domstate", domain) == "shut off"
    assert virsh("domuuid", domain) == vm["uuid"]
    xml = virsh("dumpxml", domain)
    assert "<domain type='qemu'" in xml
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as f:
        f.write(xml)
        f.flush()
        validated = subprocess.run(["virt-xml-validate", f.name, "domain"], text=True, capture_output=True)
    assert validated.returncode == 0, validated.stderr
    assert await unix_rpc.call("vm.get_instance", vm["id"]) == vm


async def test_lifecycle(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    domain = f"{vm['id']}_{vm['name']}"
    await unix_rpc.call("core.subscribe", "vm.query")
    before = time.time()
    assert await unix_rpc.call("vm.start", vm["id"]) is None
    after = time.time()
    status = await unix_rpc.call("vm.status", vm["id"])
    assert status["state"] == "RUNNING" and status["domain_state"] == "RUNNING" and status["pid"] > 0
    # When the QEMU process started (libvirt starts it during vm.start); the query and events say the same.
    assert before - 0.05 <= status["started_at"] <= after + 0.05
    listed = await unix_rpc.call("vm.query", [["id", "=", vm["id"]]], {"get": True, "select": ["status"]})
    assert listed["status"]["started_at"] == status["started_at"]
    assert virsh("domstate", domain) == "running"
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.start", vm["id"])
    assert "already running" in e.value.reason
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.resume", vm["id"])
    assert "not suspended" in e.value.reason

    await unix_rpc.call("vm.suspend", vm["id"])
    assert (await unix_rpc.call("vm.status", vm["id"]))["state"] == "SUSPENDED"
    assert virsh("domstate", domain) == "paused"
    await unix_rpc.call("vm.resume", vm["id"])
    resumed = await unix_rpc.call("vm.status", vm["id"])
    assert resumed["state"] == "RUNNING" and resumed["started_at"] == status["started_at"]

    # OVMF without a guest ignores ACPI: the job powers off after the 5 s timeout and says so.
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    await unix_rpc.call("core.subscribe", "core.get_jobs")
    await unix_rpc.call("vm.stop", vm["id"], {"force_after_timeout": True}, timeout=60)
    stopped = await unix_rpc.call("vm.status", vm["id"])
    assert stopped["state"] == "STOPPED" and stopped["started_at"] is None
    job = (await unix_rpc.call("core.get_jobs", [["method", "=", "vm.stop"]], {"order_by": ["-id"]}))[0]
    assert job["state"] == "SUCCESS" and "Powered off after 5 s" in job["progress"]["description"]
    states = [e["params"]["fields"]["status"]["state"] for e in unix_rpc.events
              if e.get("params", {}).get("collection") == "vm.query" and e["params"]["id"] == vm["id"]]
    assert {"RUNNING", "SUSPENDED", "STOPPED"} <= set(states)


async def test_stop_without_force_times_out_clearly(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    await unix_rpc.call("vm.start", vm["id"])
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.stop", vm["id"], timeout=60)
    assert e.value.errno == 110 and "did not shut down within 5 seconds" in e.value.reason
    assert (await unix_rpc.call("vm.status", vm["id"]))["state"] == "RUNNING"
    await unix_rpc.call("vm.poweroff", vm["id"])
    assert (await unix_rpc.call("vm.status", vm["id"]))["state"] == "STOPPED"
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.poweroff", vm["id"])
    assert "not running" in e.value.reason


async def test_outside_destroy_is_seen_as_event(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    await unix_rpc.call("vm.start", vm["id"])
    await unix_rpc.call("core.subscribe", "vm.query")
    await asyncio.to_thread(virsh, "destroy", f"{vm['id']}_{vm['name']}")
    # The event is due within a second of the change (a functional deadline, with slack for a busy host).
    ev = await unix_rpc.next_event(lambda e: e.get("params", {}).get("id") == vm["id"]
                                   and e["params"]["fields"]["status"]["state"] == "STOPPED", timeout=2)
    assert ev["params"]["msg"] == "changed" and ev["params"]["extra"]["state"] == "STOPPED"
    stopped = await unix_rpc.call("vm.query", [["status.state", "=", "STOPPED"], ["id", "=", vm["id"]]])
    assert len(stopped) == 1


async def test_outside_start_has_its_start_time(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    # A domain started by someone else (virsh here) has its start time read from its QEMU process too.
    await unix_rpc.call("core.subscribe", "vm.query")
    before = time.time()
    await asyncio.to_thread(virsh, "start", f"{vm['id']}_{vm['name']}")
    after = time.time()
    ev = await unix_rpc.next_event(lambda e: e.get("params", {}).get("id") == vm["id"]
                                   and e["params"]["fields"]["status"]["state"] == "RUNNING", timeout=5)
    assert before - 0.05 <= ev["params"]["fields"]["status"]["started_at"] <= after + 0.05
    await unix_rpc.call("vm.poweroff", vm["id"])


async def test_restart_job(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    await unix_rpc.call("vm.start", vm["id"])
    first = await unix_rpc.call("vm.status", vm["id"])
    pid = first["pid"]
    await unix_rpc.call("core.set_options", {"legacy_jobs": False})
    await unix_rpc.call("vm.restart", vm["id"], timeout=60)
    status = await unix_rpc.call("vm.status", vm["id"])
    assert status["state"] == "RUNNING" and status["pid"] != pid
    # A new QEMU process: the uptime starts again.
    assert status["started_at"] > first["started_at"]


async def test_memory_admission(unix_rpc: Rpc) -> None:
    available = await unix_rpc.call("vm.get_available_memory")
    huge = available // (1024 * 1024) + 1024
    big = await unix_rpc.call("vm.create", {"name": unique("big"), "memory": huge, "autostart": False})
    try:
        with pytest.raises(RpcError) as e:
            await unix_rpc.call("vm.start", big["id"])
        assert e.value.code == -32001 and e.value.errno == 12
        assert e.value.reason == f"[ENOMEM] Cannot guarantee memory for guest {big['name']}"
        # min_memory is what must fit: with it small, the start is admitted.
        await unix_rpc.call("vm.update", big["id"], {"min_memory": 64})
        await unix_rpc.call("vm.start", big["id"])
        await unix_rpc.call("vm.poweroff", big["id"])
        await unix_rpc.call("vm.update", big["id"], {"min_memory": None, "memory": 128})
        await unix_rpc.call("vm.start", big["id"], {"overcommit": True})
        await unix_rpc.call("vm.poweroff", big["id"])
    finally:
        await unix_rpc.call("vm.delete", big["id"], {"force": True})


async def test_clone(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    await unix_rpc.call("core.subscribe", "vm.query")
    clone = await unix_rpc.call("vm.clone", vm["id"])
    try:
        assert clone["name"] == f"{vm['name']}_clone0" and clone["uuid"] != vm["uuid"]
        assert clone["memory"] == vm["memory"] and clone["id"] != vm["id"]
        ev = await unix_rpc.next_event(lambda e: e.get("params", {}).get("msg") == "added")
        assert ev["params"]["id"] == clone["id"]
        second = await unix_rpc.call("vm.clone", vm["id"])
        assert second["name"] == f"{vm['name']}_clone1"
        await unix_rpc.call("vm.delete", second["id"])
        named = await unix_rpc.call("vm.clone", vm["id"], unique("named"))
        await unix_rpc.call("vm.delete", named["id"])
        with pytest.raises(RpcError) as e:
            await unix_rpc.call("vm.clone", vm["id"], clone["name"])
        assert e.value.errno == 17
    finally:
        await unix_rpc.call("vm.delete", clone["id"])


async def test_update_and_rename(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    new_name = unique("ren")
    updated = await unix_rpc.call("vm.update", vm["id"], {"name": new_name, "vcpus": 2, "description": "x<y"})
    assert updated["name"] == new_name and updated["vcpus"] == 2 and updated["memory"] == 64
    assert virsh("domstate", f"{vm['id']}_{new_name}") == "shut off"
    with pytest.raises(subprocess.CalledProcessError):
        virsh("domstate", f"{vm['id']}_{vm['name']}")
    await unix_rpc.call("vm.start", vm["id"])
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.update", vm["id"], {"name": unique("no")})
    assert e.value.extra[0][0] == "vm_update.name" and e.value.extra[0][2] == 16
    await unix_rpc.call("vm.poweroff", vm["id"])


async def test_delete_running_needs_force(unix_rpc: Rpc) -> None:
    created = await unix_rpc.call("vm.create", {"name": unique("del"), "memory": 64, "autostart": False})
    domain = f"{created['id']}_{created['name']}"
    await unix_rpc.call("vm.start", created["id"])
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.delete", created["id"])
    assert e.value.errno == 16
    await unix_rpc.call("core.subscribe", "vm.query")
    assert await unix_rpc.call("vm.delete", created["id"], {"force": True}) is True
    await unix_rpc.next_event(lambda e: e.get("params", {}).get("msg") == "removed"
                              and e["params"]["id"] == created["id"])
    with pytest.raises(subprocess.CalledProcessError):
        virsh("domstate", domain)
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.get_instance", created["id"])
    assert (e.value.code, e.value.errno, e.value.reason) == (-32001, 2, f"[ENOENT] VM {created['id']} does not exist")


@pytest.mark.parametrize("data, attribute, errno_", [
    ({"memory": 64}, "vm_create.name", 22),
    ({"name": "x"}, "vm_create.memory", 22),
    ({"name": "bad name!", "memory": 64}, "vm_create.name", 22),
    ({"name": "x", "memory": 10}, "vm_create.memory", 22),
    ({"name": "x", "memory": 64, "vcpus": 17}, "vm_create.vcpus", 22),
    ({"name": "x", "memory": 64, "cores": 0}, "vm_create.cores", 22),
    ({"name": "x", "memory": 64, "shutdown_timeout": 301}, "vm_create.shutdown_timeout", 22),
    ({"name": "x", "memory": 64, "min_memory": 128}, "vm_create.min_memory", 22),
    ({"name": "x", "memory": 64, "cpuset": "0-"}, "vm_create.cpuset", 22),
    ({"name": "x", "memory": 64, "cpuset": "4096"}, "vm_create.cpuset", 22),
    ({"name": "x", "memory": 64, "nodeset": "99"}, "vm_create.nodeset", 22),
    ({"name": "x", "memory": 64, "pin_vcpus": True}, "vm_create.pin_vcpus", 22),
    ({"name": "x", "memory": 64, "cpu_model": "NoSuchCPU"}, "vm_create.cpu_model", 22),
    ({"name": "x", "memory": 64, "bootloader_ovmf": "MISSING.fd"}, "vm_create.bootloader_ovmf", 2),
    ({"name": "x", "memory": 64, "vcpus": 16, "cores": 64, "threads": 64}, "vm_create.vcpus", 22),
    ({"name": "x", "memory": 64, "time": "MARS"}, "vm_create.time", 22),
    ({"name": "x", "memory": 64, "uuid": "not-a-uuid"}, "vm_create.uuid", 22),
    ({"name": "x", "memory": 64, "command_line_args": "'unclosed"}, "vm_create.command_line_args", 22),
    ({"name": "x", "memory": 64, "enable_secure_boot": True, "bootloader": "UEFI_CSM"},
     "vm_create.enable_secure_boot", 22),
    ({"name": "x", "memory": 64, "unknown": 1}, "vm_create.unknown", 22),
])
async def test_create_validation(unix_rpc: Rpc, data: dict[str, Any], attribute: str, errno_: int) -> None:
    before = await unix_rpc.call("vm.query", [], {"count": True})
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.create", data)
    assert e.value.code == -32602
    assert [attribute, errno_] in [[a, n] for a, _, n in e.value.extra], e.value.extra
    assert await unix_rpc.call("vm.query", [], {"count": True}) == before


async def test_create_reports_all_errors_and_duplicate_name(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.create", {"name": vm["name"], "memory": 64, "min_memory": 100, "cpuset": "x"})
    attrs = {(a, n) for a, _, n in e.value.extra}
    assert {("vm_create.name", 17), ("vm_create.min_memory", 22), ("vm_create.cpuset", 22)} <= attrs


async def test_query_filters_and_options(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    rows = await unix_rpc.call("vm.query", [["name", "=", vm["name"]]], {"select": ["id", ["status.state", "s"]]})
    assert rows == [{"id": vm["id"], "s": "STOPPED"}]
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.query", [["name", "===", "x"]])
    assert e.value.code == -32602 and e.value.extra[0][0] == "filters"
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.query", [], {"get": True, "limit": 5})
    assert e.value.extra[0][0] == "options"


async def test_wrong_ids(unix_rpc: Rpc) -> None:
    for method in ("vm.start", "vm.poweroff", "vm.suspend", "vm.resume", "vm.status", "vm.clone", "vm.delete"):
        with pytest.raises(RpcError) as e:
            await unix_rpc.call(method, 987654)
        assert e.value.code == -32001 and e.value.errno == 2, method  # a failed lookup: ENOENT
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.update", 987654, {"vcpus": 2})
    assert e.value.errno == 2
