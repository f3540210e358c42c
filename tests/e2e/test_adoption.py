"""kill -9 of the daemon while a guest runs: the restarted daemon adopts the same QEMU process and stops it
gracefully. Uses a daemon of its own (the session's must not be killed)."""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.support import boots, connect, guest_vm, place_iso, remove_domain, run_job, wait_ready
from tests.support import Daemon, cleanup_libvirt, start_daemon, stop_daemon, unique

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


async def boot_guest(daemon: Daemon, iso: str) -> tuple[dict[str, Any], int]:
    """Create and start a guest on the daemon, wait for it to be up; return it and its QEMU pid."""
    async with connect(daemon.socket) as rpc:
        vm = await rpc.call("vm.create", guest_vm(unique("adopt"), iso))
        await rpc.call("vm.start", vm["id"])
        await wait_ready(rpc, vm["id"])
        status = await rpc.call("vm.status", vm["id"])
        assert status["state"] == "RUNNING" and status["pid"] > 0
        return vm, int(status["pid"])


async def test_killed_daemon_adopts_the_running_guest(libvirtd: str, guest_iso: Path) -> None:
    vm: dict[str, Any] | None = None
    pool = f"mwe2ea{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="mwe2e-") as tmp:
        daemon = start_daemon(Path(tmp), pool=pool)
        try:
            vm, pid = await boot_guest(daemon, place_iso(guest_iso, daemon.tmp))
            daemon.process.kill()
            daemon.process.wait()
            assert alive(pid)
            daemon = start_daemon(Path(tmp), pool=pool)
            async with connect(daemon.socket) as rpc:
                status = await rpc.call("vm.status", vm["id"])
                assert {**status, "started_at": None} == {"state": "RUNNING", "pid": pid, "domain_state": "RUNNING",
                                                          "started_at": None}, status
                assert status["started_at"] < time.time() - 1, status
                job, _ = await run_job(rpc, "vm.stop", vm["id"], {"force": False})
                assert job["state"] == "SUCCESS", job
                assert (await rpc.call("vm.status", vm["id"]))["state"] == "STOPPED"
                assert boots(await rpc.call("vm.console_log", vm["id"]))[-1].events[-2:] == ["POWERBUTTON",
                                                                                            "POWEROFF"]
                await rpc.call("vm.delete", vm["id"])
                vm = None
        finally:
            stop_daemon(daemon)
            if vm is not None:
                remove_domain(f"{vm['id']}_{vm['name']}")
            cleanup_libvirt(pool)
