"""SIGKILL of the daemon the moment a write's volume (or RAW file) appears, before the row that would own it
commits: after a restart nothing is left in the pool, the retry succeeds, and volumes made otherwise (by hand,
by another daemon killed the same way) stay."""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import json
import os
import select
import struct
import subprocess
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, AsyncIterator, Awaitable, Callable, Iterator

import aiohttp
import libvirt
import pytest

from tests.integration.test_vm_crash import lv  # noqa: F401 (fixture: libvirt with an event loop)
from tests.ova_maker import make_ova
from tests.support import STARTED, Daemon, Rpc, cleanup_libvirt, connect, start_daemon, stop_daemon, unique

pytestmark = pytest.mark.timeout(600)

GIB = 1 << 30
IN_CREATE, IN_MOVED_TO = 0x100, 0x80
# Calls killed too late (their row committed first) are tried again under a new name, at most this often.
ATTEMPTS = 4


class KillOnCreate:
    """SIGKILL a daemon as soon as a file of this name appears in a directory (inotify: within microseconds of
    the creating system call, long before the daemon's transaction can commit)."""

    def __init__(self, daemon: Daemon, directory: Path, name: str) -> None:
        self.daemon, self.name = daemon, name
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        self.fd = libc.inotify_init1(os.O_NONBLOCK)
        assert self.fd >= 0 and libc.inotify_add_watch(self.fd, str(directory).encode(), IN_CREATE | IN_MOVED_TO) >= 0
        self.stop = threading.Event()
        self.fired = False
        self.thread = threading.Thread(target=self._watch, daemon=True)
        self.thread.start()

    def _watch(self) -> None:
        while not self.stop.is_set():
            if not select.select([self.fd], [], [], 0.1)[0]:
                continue
            data = os.read(self.fd, 65536)
            while data:
                _, _, _, length = struct.unpack_from("iIII", data)
                name = data[16:16 + length].rstrip(b"\0").decode()
                data = data[16 + length:]
                if name == self.name and self.daemon.process.poll() is None:
                    self.daemon.process.kill()
                    self.fired = True

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        os.close(self.fd)


@pytest.fixture
def home() -> Iterator[Path]:
    """A daemon's directory that QEMU can search (RAW files must be reachable; pytest's home is private)."""
    with tempfile.TemporaryDirectory(prefix="mwtest-") as tmp:
        os.chmod(tmp, 0o755)
        yield Path(tmp)


def volumes(conn: libvirt.virConnect, pool: str) -> set[str]:
    p = conn.storagePoolLookupByName(pool)
    p.refresh(0)
    return {v.name() for v in p.listAllVolumes(0)}


def make_volume(conn: libvirt.virConnect, pool: str, name: str) -> None:
    conn.storagePoolLookupByName(pool).createXML(
        f"<volume><name>{name}</name><capacity>1048576</capacity><target><format type='qcow2'/></target></volume>")


async def send_unanswered(daemon: Daemon, method: str, *params: Any) -> bool:
    """Send a call and read until the daemon dies (it is meant to be killed before it answers); True when the call
    was answered first (the daemon is then killed here)."""
    answered = False
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.socket)) as session:
        ws = await session.ws_connect("ws://localhost/api/current", max_msg_size=0)
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "core.set_options",
                                      "params": [{"legacy_jobs": False}]}))
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 2, "method": method, "params": list(params)}))
        async with asyncio.timeout(120):
            async for msg in ws:
                if json.loads(msg.data).get("id") == 2:
                    answered = True
                    daemon.process.kill()
    await asyncio.to_thread(daemon.process.wait)
    return answered


CLEANED = "of writes the daemon never finished"


async def wait_for_log(daemon: Daemon, since: int, text: str = CLEANED, timeout: float = 60) -> None:
    """Wait until text is in the log past offset `since` (the log goes on over the daemon's lives)."""
    deadline = time.monotonic() + timeout
    while text not in daemon.log()[since:]:
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{daemon.log()[-3000:]}"
        await asyncio.sleep(0.2)


@contextlib.asynccontextmanager
async def crash_site(home: Path, lv: libvirt.virConnect) -> AsyncIterator[Daemon]:
    """A daemon with a hand-made volume in its pool; at the end the hand-made volume must still be there."""
    daemon = start_daemon(home)
    handmade = unique("handmade")
    try:
        async with connect(daemon) as rpc:
            await rpc.call("vm.device.pool_choices")  # the pool exists once this answers
        make_volume(lv, daemon.pool, handmade)
        yield daemon
        assert handmade in volumes(lv, daemon.pool)
    finally:
        # Every life of every daemon under home, before home (their databases) goes.
        for life in [d for d in STARTED if d.tmp.is_relative_to(home)]:
            STARTED.remove(life)
            if life.process.poll() is None:
                stop_daemon(life)
            cleanup_libvirt(life.pool, life.tmp / "db" / "middlewared.db")


async def killed_then_retried(home: Path, lv: libvirt.virConnect, daemon: Daemon, target: Path,
                              call: Callable[[str], tuple[str, list[Any]]],
                              committed: Callable[[Rpc, str], Awaitable[bool]]) -> Daemon:
    """Kill `call(name)` when `target` (named after name) appears; after the restart it is gone and the retry
    succeeds. Returns the daemon of the last life."""
    for _ in range(ATTEMPTS):
        name = unique("crash")
        path = Path(str(target).format(name=name))
        killer = KillOnCreate(daemon, path.parent, path.name)
        try:
            # inotify kills within microseconds of the volume's birth: always before the answer.
            assert not await send_unanswered(daemon, call(name)[0], *call(name)[1])
        finally:
            killer.close()
        assert killer.fired
        since = len(daemon.log())
        daemon = start_daemon(home, port=daemon.port, pool=daemon.pool)
        async with connect(daemon) as rpc:
            if await committed(rpc, name):
                continue  # the row committed before the kill landed: nothing was left, try again
            await wait_for_log(daemon, since)
            assert not path.exists()
            method, params = call(name)
            await rpc.call("core.set_options", {"legacy_jobs": False})
            await rpc.call(method, *params, timeout=120)
            assert path.exists()
            return daemon
    pytest.fail(f"every kill came after the commit ({ATTEMPTS} attempts)")


async def vm_named(rpc: Rpc, name: str) -> bool:
    return bool(await rpc.call("vm.query", [["name", "=", name]]))


async def test_vm_create_with_new_volume(home: Path, lv: libvirt.virConnect) -> None:
    async with crash_site(home, lv) as daemon:
        def call(name: str) -> tuple[str, list[Any]]:
            return "vm.create", [{"name": name, "memory": 64, "autostart": False, "devices": [{"attributes": {
                "dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{name}", "zvol_volsize": GIB}}]}]
        await killed_then_retried(home, lv, daemon, daemon.storage / daemon.pool / "{name}", call, vm_named)


async def test_device_create_with_new_volume_and_raw_file(home: Path, lv: libvirt.virConnect) -> None:
    async with crash_site(home, lv) as daemon:
        async with connect(daemon) as rpc:
            vm = await rpc.call("vm.create", {"name": unique("owner"), "memory": 64, "autostart": False})
            vm_id = vm["id"]

        async def device_of(rpc: Rpc, name: str) -> bool:
            rows = await rpc.call("vm.device.query", [["vm", "=", vm_id]])
            return any(name in json.dumps(d["attributes"]) for d in rows)

        def disk(name: str) -> tuple[str, list[Any]]:
            return "vm.device.create", [{"vm": vm_id, "attributes": {
                "dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{name}", "zvol_volsize": GIB}}]
        daemon = await killed_then_retried(home, lv, daemon, daemon.storage / daemon.pool / "{name}", disk,
                                           device_of)

        def raw(name: str) -> tuple[str, list[Any]]:
            return "vm.device.create", [{"vm": vm_id, "attributes": {
                "dtype": "RAW", "path": str(daemon.storage / name), "exists": False, "size": GIB}}]
        await killed_then_retried(home, lv, daemon, daemon.storage / "{name}", raw, device_of)


async def test_import_disk(home: Path, lv: libvirt.virConnect) -> None:
    async with crash_site(home, lv) as daemon:
        source = daemon.storage / "source.qcow2"
        subprocess.run(["qemu-img", "create", "-f", "qcow2", str(source), "64M"], check=True, capture_output=True)

        async def never(rpc: Rpc, name: str) -> bool:
            return False  # a job answers only at its end: a kill at the volume's birth is always before it

        def call(name: str) -> tuple[str, list[Any]]:
            return "vm.device.import_disk", [{"source": str(source), "zvol_name": f"{daemon.pool}/{name}"}]
        await killed_then_retried(home, lv, daemon, daemon.storage / daemon.pool / "{name}", call, never)


@pytest.mark.parametrize("linked", [False, True], ids=["copy", "linked overlay"])
async def test_clone_copies(home: Path, lv: libvirt.virConnect, linked: bool) -> None:
    async with crash_site(home, lv) as daemon:
        source = unique("src")
        async with connect(daemon) as rpc:
            # A linked clone's overlays are made from a template's volumes.
            vm = await rpc.call("vm.create", {"name": source, "memory": 64, "autostart": False, "template": linked,
                                              "devices": [{"attributes": {
                                                  "dtype": "DISK", "create_zvol": True,
                                                  "zvol_name": f"{daemon.pool}/{source}", "zvol_volsize": GIB}}]})

        def call(name: str) -> tuple[str, list[Any]]:
            return "vm.clone", [vm["id"], name, {"linked": linked}]
        await killed_then_retried(home, lv, daemon, daemon.storage / daemon.pool / f"{source}_{{name}}", call,
                                  vm_named)


async def test_another_instances_leftover_is_kept(home: Path, lv: libvirt.virConnect) -> None:
    """Two daemons share a pool; one is killed mid-create: the other's restart leaves its volume alone (only the
    killed daemon's own restart removes it)."""
    other_dir = home / "other"
    other_dir.mkdir()
    async with crash_site(home, lv) as daemon:
        other = start_daemon(other_dir, pool=daemon.pool)
        name = unique("theirs")
        killer = KillOnCreate(other, daemon.storage / daemon.pool, name)
        try:
            assert not await send_unanswered(other, "vm.create", {"name": name, "memory": 64, "autostart": False, "devices": [
                {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{name}",
                                "zvol_volsize": GIB}}]})
        finally:
            killer.close()
        stop_daemon(daemon)
        daemon = start_daemon(home, port=daemon.port, pool=daemon.pool)
        async with connect(daemon) as rpc:
            await rpc.call("vm.device.pool_choices")
        await asyncio.sleep(2)
        assert name in volumes(lv, daemon.pool)
        since = len(other.log())
        other = start_daemon(other_dir, port=other.port, pool=daemon.pool)
        try:
            await wait_for_log(other, since)
            assert name not in volumes(lv, daemon.pool)
        finally:
            stop_daemon(other)


@pytest.mark.parametrize("method", ["vm.delete", "vm.device.delete"])
async def test_delete_with_storage(home: Path, lv: libvirt.virConnect, method: str) -> None:
    """Killed as libvirt reports the domain undefined (vm.delete) or redefined (vm.device.delete), inside the
    transaction: a delete that committed has its volume removed at the restart, one that did not keeps it."""
    async with crash_site(home, lv) as daemon:
        for _ in range(3 * ATTEMPTS):
            name = unique("gone")
            async with connect(daemon) as rpc:
                vm = await rpc.call("vm.create", {"name": name, "memory": 64, "autostart": False, "devices": [
                    {"attributes": {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{daemon.pool}/{name}",
                                    "zvol_volsize": GIB}}]})
            domain, event = f"{vm['id']}_{name}", (libvirt.VIR_DOMAIN_EVENT_UNDEFINED if method == "vm.delete"
                                                   else libvirt.VIR_DOMAIN_EVENT_DEFINED)

            def on_event(conn: libvirt.virConnect, dom: libvirt.virDomain, kind: int, detail: int, _: Any,
                         victim: Daemon = daemon, domain: str = domain, event: int = event) -> None:
                if kind == event and dom.name() == domain and victim.process.poll() is None:
                    victim.process.kill()
            callback = lv.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, on_event, None)
            try:
                params = [vm["id"], {"zvols": True}] if method == "vm.delete" else [vm["devices"][0]["id"],
                                                                                     {"zvol": True}]
                # The event may come after the whole delete was done: a miss, like a kill before the COMMIT.
                done = await send_unanswered(daemon, method, *params)
            finally:
                lv.domainEventDeregisterAny(callback)
            since = len(daemon.log())
            daemon = start_daemon(home, port=daemon.port, pool=daemon.pool)
            async with connect(daemon) as rpc:
                rows = await rpc.call("vm.query", [["name", "=", name]])
                if done:
                    assert name not in volumes(lv, daemon.pool)
                    continue
                if rows and rows[0]["devices"]:
                    # The kill came before the COMMIT: nothing was deleted.
                    assert name in volumes(lv, daemon.pool)
                    continue
                if name not in volumes(lv, daemon.pool) and CLEANED not in daemon.log()[since:]:
                    continue  # the storage went before the kill (its intent with it): a miss, not a leak
                await wait_for_log(daemon, since)
                assert name not in volumes(lv, daemon.pool)
                return
        pytest.fail("no kill fell between the COMMIT and the removal of the storage")


async def test_import_ova(home: Path, lv: libvirt.virConnect) -> None:
    """Killed as the first disk's volume appears: the volume and the directory the disks were extracted to go."""
    async with crash_site(home, lv) as daemon:
        disk = daemon.storage / "ova-source.qcow2"
        subprocess.run(["qemu-img", "create", "-f", "qcow2", str(disk), "16M"], check=True, capture_output=True)
        archive = make_ova(daemon.storage, unique("ova"), [disk], vcpus=1, memory_mib=64, nics=[])

        def call(name: str) -> tuple[str, list[Any]]:
            return "vm.import_ova", [{"path": str(archive), "name": name}]
        await killed_then_retried(home, lv, daemon, daemon.storage / daemon.pool / "{name}-disk0", call, vm_named)
        assert not list(daemon.storage.glob(".ova-import-*"))
