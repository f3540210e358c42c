"""Test support: a real daemon in a subprocess, raw JSON-RPC connections, libvirt clean-up."""
from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

ROOT = Path(__file__).resolve().parent.parent


# Daemons started by this test process, cleaned up (domains, pools) at the end of the session.
STARTED: list["Daemon"] = []


def unique(prefix: str = "t") -> str:
    """A name no other test uses."""
    return f"{prefix}{uuid.uuid4().hex[:8]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Daemon:
    """A running daemon subprocess and where to reach it."""

    process: subprocess.Popen[bytes]
    tmp: Path
    config_path: Path
    socket: str
    port: int
    pool: str
    log_path: Path

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}/api/current"

    @property
    def unix_uri(self) -> str:
        return f"ws+unix://{self.socket}"

    @property
    def storage(self) -> Path:
        return self.tmp / "storage"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


def write_config(tmp: Path, port: int, pool: str, extra: str = "", server_extra: str = "") -> Path:
    # QEMU runs as libvirt's own user: it must be able to pass through to the storage root.
    tmp.chmod(0o711)
    (tmp / "storage").mkdir(exist_ok=True)
    path = tmp / "middlewared.toml"
    path.write_text(f"""
[server]
unix_socket = "{tmp}/middlewared.sock"
host = "127.0.0.1"
port = {port}
{server_extra}
[database]
path = "{tmp}/db/middlewared.db"

[libvirt]
uri = "qemu:///system"

[storage]
roots = ["{tmp}/storage"]
pool = "{pool}"

[jobs]
logs_dir = "{tmp}/jobs"
{extra}
""")
    return path


def start_daemon(tmp: Path, port: int | None = None, pool: str | None = None, extra: str = "",
                 keep_config: bool = False, server_extra: str = "") -> Daemon:
    """Start the daemon and wait until it answers on its unix socket (keep_config: reuse tmp's config;
    extra: more sections; server_extra: more keys of [server])."""
    port = port or free_port()
    pool = pool or unique(f"mwtest{os.getpid()}_")
    config = tmp / "middlewared.toml"
    if not (keep_config and config.exists()):
        config = write_config(tmp, port, pool, extra, server_extra)
    log_path = tmp / "daemon.log"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "middlewared", "--config", str(config), "--debug"],
                                stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT), env=env)
    daemon = Daemon(proc, tmp, config, f"{tmp}/middlewared.sock", port, pool, log_path)
    STARTED.append(daemon)
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"daemon exited with {proc.returncode}:\n{daemon.log()}")
        if os.path.exists(daemon.socket):
            try:
                with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                    return daemon
            except OSError:
                pass
        time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"daemon did not start:\n{daemon.log()}")


def stop_daemon(daemon: Daemon, timeout: float = 30) -> int:
    daemon.process.terminate()
    try:
        return daemon.process.wait(timeout)
    except subprocess.TimeoutExpired:
        daemon.process.kill()
        return daemon.process.wait()


def cleanup_libvirt(pool: str, db_path: Path | None = None) -> None:
    """Remove what a test daemon left in libvirt: its VMs' domains (named from its database) and its pool."""
    import libvirt
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    names: list[str] = []
    if db_path is not None and db_path.exists():
        with contextlib.closing(sqlite3.connect(str(db_path))) as db:
            try:
                names = [f"{i}_{n}" for i, n in db.execute("SELECT id, name FROM vm_vm")]
            except sqlite3.Error:
                pass
    conn = libvirt.open("qemu:///system")
    try:
        for name in names:
            with contextlib.suppress(libvirt.libvirtError):
                dom = conn.lookupByName(name)
                if dom.isActive():
                    dom.destroy()
                dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM)
        with contextlib.suppress(libvirt.libvirtError):
            p = conn.storagePoolLookupByName(pool)
            for vol in p.listAllVolumes():
                vol.delete()
            if p.isActive():
                p.destroy()
            p.undefine()
    finally:
        conn.close()


def cleanup_started() -> None:
    """Stop every daemon this test process started and remove what they left in libvirt."""
    while STARTED:
        daemon = STARTED.pop()
        if daemon.process.poll() is None:
            stop_daemon(daemon)
        cleanup_libvirt(daemon.pool, daemon.tmp / "db" / "middlewared.db")


class Rpc:
    """A raw JSON-RPC WebSocket connection for protocol-level tests."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._id = 0
        self.events: list[dict[str, Any]] = []

    async def send(self, message: Any) -> None:
        await self.ws.send_str(message if isinstance(message, str) else json.dumps(message))

    async def receive(self, timeout: float = 10) -> dict[str, Any]:
        msg = await asyncio.wait_for(self.ws.receive(), timeout)
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"socket closed: {msg.type} {msg.data!r} {msg.extra!r}")
        data: dict[str, Any] = json.loads(msg.data)
        return data

    async def request(self, method: str, *params: Any, timeout: float = 30) -> dict[str, Any]:
        """Send a call and return its whole response; events seen meanwhile are kept."""
        self._id += 1
        my_id = self._id
        await self.send({"jsonrpc": "2.0", "id": my_id, "method": method, "params": list(params)})
        while True:
            data = await self.receive(timeout)
            if data.get("id") == my_id and ("result" in data or "error" in data):
                return data
            self.events.append(data)

    async def call(self, method: str, *params: Any, timeout: float = 30) -> Any:
        """The result of a call; an error response raises AssertionError with the error."""
        data = await self.request(method, *params, timeout=timeout)
        if "error" in data:
            raise RpcError(data["error"])
        return data["result"]

    async def next_event(self, predicate: Any = None, timeout: float = 10) -> dict[str, Any]:
        """The next notification (kept or new) that satisfies predicate."""
        deadline = time.monotonic() + timeout
        while True:
            for i, ev in enumerate(self.events):
                if predicate is None or predicate(ev):
                    return self.events.pop(i)
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no matching event")
            self.events.append(await self.receive(remaining))


class RpcError(Exception):
    """An error response."""

    def __init__(self, error: dict[str, Any]) -> None:
        super().__init__(json.dumps(error)[:2000])
        self.error = error
        self.code = error["code"]
        self.data = error.get("data") or {}
        self.errno = self.data.get("error")
        self.reason = self.data.get("reason")
        self.extra = self.data.get("extra")


async def open_rpc(session: aiohttp.ClientSession, url: str) -> Rpc:
    return Rpc(await session.ws_connect(url, max_msg_size=0))




@asynccontextmanager
async def connect(daemon: Daemon) -> AsyncIterator[Rpc]:
    """A root connection over the unix socket of a daemon started by a test."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.socket)) as s:
        rpc = await open_rpc(s, "ws://localhost/api/current")
        try:
            yield rpc
        finally:
            await rpc.ws.close()
