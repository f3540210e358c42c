"""e2e helpers: what the guest printed (its GUEST- lines, boot by boot), waiting on it, jobs, connections."""
from __future__ import annotations

import asyncio
import os
import re
import shutil
import subprocess
import time
from contextlib import asynccontextmanager, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator, Sequence

import aiohttp

from tests.support import Rpc, open_rpc

# Under TCG a boot takes ~22 s on an idle host (guest/REPORT.md); concurrent guests and tests slow it down.
BOOT_TIMEOUT = 180.0
_LINE = re.compile(r"^GUEST-([A-Z]+)(?: (.*))?$")


@dataclass
class Boot:
    """What the guest reported during one boot, up to its GUEST-READY line (if it got there)."""

    disks: dict[str, dict[str, str]] = field(default_factory=dict)   # name -> {size, bus, serial}
    nics: dict[str, str] = field(default_factory=dict)               # name -> MAC
    ready: bool = False
    events: list[str] = field(default_factory=list)                  # POWERBUTTON, POWEROFF, WARNING ...

    @property
    def serials(self) -> set[str]:
        return {d["serial"] for d in self.disks.values() if d["serial"]}

    @property
    def macs(self) -> set[str]:
        return set(self.nics.values())


def boots(console: str) -> list[Boot]:
    """The guest's reports from a console log, one Boot per boot (a DISK or NIC line after a READY or a
    POWEROFF starts the next). Firmware output and escape sequences are ignored: reports are whole lines."""
    out: list[Boot] = []
    for raw in console.replace("\r", "").split("\n"):
        match = _LINE.match(raw)
        if match is None:
            continue
        kind, rest = match[1], match[2] or ""
        if not out or (kind in ("DISK", "NIC") and (out[-1].ready or "POWEROFF" in out[-1].events)):
            out.append(Boot())
        boot = out[-1]
        if kind == "DISK":
            # "sda size=2097152 bus=usb serial=AB 12": the serial, which may hold blanks, comes last.
            name, _, attrs = rest.partition(" ")
            fields, _, serial = attrs.partition("serial=")
            pairs = (f.partition("=") for f in fields.split())
            boot.disks[name] = {key: value for key, _, value in pairs} | {"serial": serial.strip()}
        elif kind == "NIC":
            name, _, attrs = rest.partition(" ")
            boot.nics[name] = attrs.removeprefix("mac=")
        elif kind == "READY":
            boot.ready = True
        else:
            boot.events.append(kind)
    return out


def ready_count(console: str) -> int:
    """How many boots reached GUEST-READY."""
    return sum(b.ready for b in boots(console))


async def wait_console(rpc: Rpc, vm_id: int, predicate: Callable[[str], bool], what: str, timeout: float = BOOT_TIMEOUT) -> str:
    """Poll vm.console_log until predicate(text) holds; fail with the log's end after timeout."""
    deadline = time.monotonic() + timeout
    while True:
        text: str = await rpc.call("vm.console_log", vm_id)
        if predicate(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"VM {vm_id}: no {what} after {timeout:.0f} s; console ends with:\n{text[-3000:]}")
        await asyncio.sleep(0.5)


async def wait_ready(rpc: Rpc, vm_id: int, count: int = 1, timeout: float = BOOT_TIMEOUT) -> Boot:
    """Wait until the guest has reached GUEST-READY `count` times in all; return the last boot's report."""
    text = await wait_console(rpc, vm_id, lambda t: ready_count(t) >= count, f"GUEST-READY #{count}", timeout)
    return [b for b in boots(text) if b.ready][-1]


async def state(rpc: Rpc, vm_id: int) -> str:
    """vm.status's state: RUNNING, SUSPENDED, STOPPED or ERROR."""
    status: dict[str, Any] = await rpc.call("vm.status", vm_id)
    return str(status["state"])


async def ensure_booted(rpc: Rpc, vm_id: int) -> Boot:
    """A running guest that has reached GUEST-READY: started (and waited for) if it is stopped."""
    if await state(rpc, vm_id) == "STOPPED":
        before = ready_count(await rpc.call("vm.console_log", vm_id))
        await rpc.call("vm.start", vm_id)
        return await wait_ready(rpc, vm_id, before + 1)
    return await wait_ready(rpc, vm_id, 1)


async def run_job(rpc: Rpc, method: str, *params: Any, timeout: float = 300) -> tuple[dict[str, Any], float]:
    """Call a job method, wait for the job to end; return the job (from core.get_jobs) and seconds taken."""
    await rpc.call("core.set_options", {"legacy_jobs": False})
    began = time.monotonic()
    try:
        await rpc.call(method, *params, timeout=timeout)
    finally:
        elapsed = time.monotonic() - began
        await rpc.call("core.set_options", {"legacy_jobs": True})
    jobs = await rpc.call("core.get_jobs", [["method", "=", method]], {"order_by": ["-id"]})
    return jobs[0], elapsed


def vm_events(rpc: Rpc, vm_id: int, msg: str = "changed") -> list[dict[str, Any]]:
    """vm.query notifications about vm_id received so far on rpc (kept by Rpc.request)."""
    return [e["params"] for e in rpc.events if e.get("method") == "collection_update"
            and e["params"].get("collection") == "vm.query" and e["params"].get("id") == vm_id
            and e["params"].get("msg") == msg]


@asynccontextmanager
async def connect(socket_path: str) -> AsyncIterator[Rpc]:
    """A raw JSON-RPC connection to a daemon's unix socket (root: authenticated by SO_PEERCRED)."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=socket_path)) as s:
        rpc = await open_rpc(s, "ws://localhost/api/current")
        try:
            yield rpc
        finally:
            await rpc.ws.close()


def guest_vm(name: str, iso: str, *, memory: int = 256, devices: Sequence[dict[str, Any]] = ()) -> dict[str, Any]:
    """vm.create arguments for a guest booting the test ISO (CD-ROM first in boot order), then `devices`."""
    cdrom = {"attributes": {"dtype": "CDROM", "path": iso}, "order": 1000}
    return {"name": name, "memory": memory, "autostart": False, "shutdown_timeout": 90,
            "devices": [cdrom, *devices]}


def place_iso(iso: Path, daemon_tmp: Path) -> str:
    """Copy the ISO under the storage root of a daemon whose config tests.support wrote in daemon_tmp (CDROM
    paths must be inside it); return the copy's path.

    A copy, not a hardlink: libvirt chowns the file it hands to QEMU (dynamic_ownership), which would change
    the cached image too. QEMU runs as libvirt-qemu, so every directory above the copy must be searchable."""
    dest = daemon_tmp / "storage" / "iso" / iso.name
    dest.parent.mkdir(parents=True, exist_ok=True)
    if not dest.exists():
        shutil.copyfile(iso, dest)
    os.chmod(daemon_tmp, 0o711)
    return str(dest)


@contextmanager
def host_bridge(name: str) -> Iterator[str]:
    """A host bridge without uplink for guests' NICs (nic_attach), removed on exit."""
    subprocess.run(["ip", "link", "add", name, "type", "bridge"], check=True, capture_output=True)
    try:
        subprocess.run(["ip", "link", "set", name, "up"], check=True, capture_output=True)
        yield name
    finally:
        subprocess.run(["ip", "link", "del", name], capture_output=True)


def call_sync(socket_path: str, method: str, *params: Any, timeout: float = 60) -> Any:
    """One call from synchronous code (module fixtures)."""
    async def go() -> Any:
        async with connect(socket_path) as rpc:
            return await rpc.call(method, *params, timeout=timeout)
    return asyncio.run(go())


def remove_domain(name: str) -> None:
    """Destroy and undefine a libvirt domain a failed test may have left behind (nothing if it is gone)."""
    import libvirt
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    conn = libvirt.open("qemu:///system")
    try:
        dom = conn.lookupByName(name)
        if dom.isActive():
            dom.destroy()
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
    except libvirt.libvirtError:
        pass
    finally:
        conn.close()


async def serial_command(rpc: Rpc, vm_id: int, command: str, marker: str, timeout: float = 60) -> str:
    """Type a command line into the guest's root shell through the serial console WebSocket; the console log
    from before the command once it holds marker."""
    since = len(await rpc.call("vm.console_log", vm_id))
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(await rpc.call("vm.get_console_web_uri", vm_id)) as ws:
            seen = b""
            # Keys typed before the daemon has given this viewer the keyboard would be dropped.
            while b"you have the keyboard" not in seen:
                msg = await asyncio.wait_for(ws.receive(), timeout)
                assert msg.type == aiohttp.WSMsgType.BINARY, msg
                seen += msg.data
            await ws.send_str(command + "\r")
            return (await wait_console(rpc, vm_id, lambda t: marker in t[since:], repr(marker), timeout))[since:]
