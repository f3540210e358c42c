"""Shared fixtures: libvirtd running, one real daemon per session, raw connections to it."""
from __future__ import annotations

import subprocess
import tempfile
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support import (ROOT, Daemon, Rpc, RpcError, cleanup_libvirt, cleanup_started, open_rpc, start_daemon,
                           stop_daemon, unique)

__all__ = ["Daemon", "Rpc", "RpcError"]


@pytest.fixture(scope="session")
def libvirtd() -> str:
    """Make sure virtlogd and libvirtd run; return the URI tests use."""
    subprocess.run([str(ROOT / "scripts" / "ensure-libvirtd")], check=True)
    return "qemu:///system"


@pytest.fixture(scope="session", autouse=True)
def libvirt_leftovers() -> Iterator[None]:
    """At the end of the session, no daemon started by a test runs and none leaves domains or pools."""
    yield
    cleanup_started()


@pytest.fixture(scope="session")
def daemon(libvirtd: str) -> Iterator[Daemon]:
    """One daemon for the session's integration tests."""
    with tempfile.TemporaryDirectory(prefix="mwtest-") as tmp:
        d = start_daemon(Path(tmp))
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool, Path(tmp) / "db" / "middlewared.db")


@pytest.fixture
async def unix_rpc(daemon: Daemon) -> AsyncIterator[Rpc]:
    """A raw connection on the unix socket (root)."""
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.socket)) as s:
        rpc = await open_rpc(s, "ws://localhost/api/current")
        yield rpc
        await rpc.ws.close()


@pytest.fixture
async def tcp_rpc(daemon: Daemon) -> AsyncIterator[Rpc]:
    """A raw anonymous TCP connection."""
    async with aiohttp.ClientSession() as s:
        rpc = await open_rpc(s, daemon.url)
        yield rpc
        await rpc.ws.close()


@pytest.fixture
async def vm(unix_rpc: Rpc) -> AsyncIterator[dict[str, Any]]:
    """A small stopped UEFI VM without devices (shutdown_timeout 5), deleted forcefully afterwards."""
    created = await unix_rpc.call("vm.create", {"name": unique("vm"), "memory": 64, "autostart": False,
                                                "shutdown_timeout": 5})
    yield created
    try:
        await unix_rpc.call("vm.delete", created["id"], {"force": True})
    except RpcError:
        pass
