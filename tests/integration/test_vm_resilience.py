"""States stay true across daemon crashes, restarts and libvirtd restarts; autostart; stop on shutdown."""
from __future__ import annotations

import asyncio
import subprocess
from pathlib import Path

import pytest

from tests.support import ROOT, Daemon, RpcError, cleanup_libvirt, connect, start_daemon, stop_daemon, unique

pytestmark = pytest.mark.timeout(300)


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True,
                          text=True).stdout.strip()


@pytest.fixture
def private(tmp_path: Path, libvirtd: str) -> Daemon:
    """A daemon of the test's own; it may be killed and restarted on the same files."""
    daemon = start_daemon(tmp_path)
    yield daemon
    if daemon.process.poll() is None:
        stop_daemon(daemon)
    cleanup_libvirt(daemon.pool)


async def test_kill_9_then_restart_adopts_running_vm(private: Daemon) -> None:
    async with connect(private) as rpc:
        vm = await rpc.call("vm.create", {"name": unique("adopt"), "memory": 64, "autostart": False})
        await rpc.call("vm.start", vm["id"])
        before = await rpc.call("vm.status", vm["id"])
        pid = before["pid"]
    private.process.kill()
    private.process.wait()
    again = start_daemon(private.tmp, port=private.port, pool=private.pool)
    private.process = again.process
    async with connect(again) as rpc:
        status = await rpc.call("vm.status", vm["id"])
        assert status["state"] == "RUNNING" and status["pid"] == pid
        # The uptime counts from the QEMU process's start, not from when this daemon found it running.
        assert status["started_at"] == pytest.approx(before["started_at"], abs=0.05)
        await rpc.call("vm.delete", vm["id"], {"force": True})


async def test_autostart_and_left_running_on_stop(private: Daemon) -> None:
    async with connect(private) as rpc:
        auto = await rpc.call("vm.create", {"name": unique("auto"), "memory": 64, "autostart": True})
        manual = await rpc.call("vm.create", {"name": unique("man"), "memory": 64, "autostart": False})
    assert stop_daemon(private) == 0
    again = start_daemon(private.tmp, port=private.port, pool=private.pool)
    private.process = again.process
    async with connect(again) as rpc:
        for _ in range(100):
            if (await rpc.call("vm.status", auto["id"]))["state"] == "RUNNING":
                break
            await asyncio.sleep(0.1)
        assert (await rpc.call("vm.status", auto["id"]))["state"] == "RUNNING"
        assert (await rpc.call("vm.status", manual["id"]))["state"] == "STOPPED"
    # The default leaves running VMs running when the daemon stops.
    assert stop_daemon(again) == 0
    assert virsh("domstate", f"{auto['id']}_{auto['name']}") == "running"
    virsh("destroy", f"{auto['id']}_{auto['name']}")


async def test_stop_vms_on_shutdown(tmp_path: Path, libvirtd: str) -> None:
    daemon = start_daemon(tmp_path, extra="")
    config = daemon.config_path.read_text().replace('uri = "qemu:///system"',
                                                    'uri = "qemu:///system"\nstop_vms_on_shutdown = true')
    stop_daemon(daemon)
    daemon.config_path.write_text(config)
    daemon = start_daemon(tmp_path, port=daemon.port, pool=daemon.pool, keep_config=True)
    try:
        async with connect(daemon) as rpc:
            vm = await rpc.call("vm.create", {"name": unique("sos"), "memory": 64, "autostart": False,
                                              "shutdown_timeout": 5})
            await rpc.call("vm.start", vm["id"])
        assert stop_daemon(daemon) == 0
        assert virsh("domstate", f"{vm['id']}_{vm['name']}") == "shut off"
    finally:
        cleanup_libvirt(daemon.pool)


async def test_libvirtd_restart_is_survived(private: Daemon) -> None:
    async with connect(private) as rpc:
        vm = await rpc.call("vm.create", {"name": unique("lvr"), "memory": 64, "autostart": False})
        await rpc.call("vm.start", vm["id"])
        subprocess.run(["pkill", "-TERM", "-x", "libvirtd"], check=True)
        for _ in range(100):
            if subprocess.run(["pgrep", "-x", "libvirtd"], capture_output=True).returncode != 0:
                break
            await asyncio.sleep(0.1)
        subprocess.run([str(ROOT / "scripts" / "ensure-libvirtd")], check=True)
        # The daemon reconnects by itself and follows events again; until then a call may fail with an
        # error answer (libvirt unreachable), never by dropping the connection.
        for _ in range(100):
            try:
                if (await rpc.call("vm.status", vm["id"]))["state"] == "RUNNING":
                    break
            except RpcError:
                pass
            await asyncio.sleep(0.1)
        else:
            pytest.fail("the VM is not seen running again after libvirtd restarted")
        await asyncio.sleep(1)
        await rpc.call("core.subscribe", "vm.query")
        virsh("destroy", f"{vm['id']}_{vm['name']}")
        await rpc.next_event(lambda e: e.get("params", {}).get("id") == vm["id"]
                             and e["params"]["fields"]["status"]["state"] == "STOPPED", timeout=5)
        await rpc.call("vm.delete", vm["id"])
