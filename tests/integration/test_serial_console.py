"""The serial console WebSocket against the real daemon and a TCG VM (its firmware writes to the serial port)."""
from __future__ import annotations

import asyncio
import errno
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest

from tests.integration.test_auth_daemon import as_root, auth_daemon, logged_in, make_user
from tests.support import Daemon, Rpc, RpcError, unique

__all__ = ["auth_daemon"]

pytestmark = pytest.mark.timeout(300)


async def read_until(ws: aiohttp.ClientWebSocketResponse, wanted: bytes, timeout: float = 120) -> bytes:
    """Binary frames until wanted shows up."""
    data = b""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while wanted not in data:
        msg = await asyncio.wait_for(ws.receive(), max(0.1, deadline - loop.time()))
        assert msg.type == aiohttp.WSMsgType.BINARY, (msg, data[-500:])
        data += msg.data
    return data


async def status_of(uri: str) -> int:
    async with aiohttp.ClientSession() as s:
        try:
            async with s.ws_connect(uri):
                return 101
        except aiohttp.WSServerHandshakeError as e:
            return e.status


async def test_console_of_a_running_vm(auth_daemon: Daemon) -> None:
    d = auth_daemon
    async with as_root(d) as root:
        vm = await root.call("vm.create", {"name": unique("ser"), "memory": 64, "autostart": False})
        other = await root.call("vm.create", {"name": unique("ser"), "memory": 64, "autostart": False})
        try:
            uri = await root.call("vm.get_console_web_uri", vm["id"])
            parts = urlsplit(uri)
            assert parts.scheme == "ws" and parts.path == f"/vm/serial/{vm['id']}" and parts.port == d.port
            async with aiohttp.ClientSession() as s, s.ws_connect(uri) as ws:
                await read_until(ws, b"not running")
                await root.call("vm.start", vm["id"])
                # OVMF prints its boot manager's lines on the serial port under TCG within a minute or so.
                await read_until(ws, b"BdsDxe")
                viewers = await root.call("vm.get_console_viewers", vm["id"])
                assert viewers["attached"] and viewers["typist"] == "root" and len(viewers["viewers"]) == 1
                await root.call("vm.poweroff", vm["id"])
                await read_until(ws, b"the VM stopped", 30)
                assert ws.closed is False
            assert await status_of(uri) == 403  # single use
            wrong = (await root.call("vm.get_console_web_uri", other["id"])).replace(
                f"/vm/serial/{other['id']}", f"/vm/serial/{vm['id']}")
            assert await status_of(wrong) == 403
            assert await status_of(uri.split("?")[0]) == 403
            https = await root.call("vm.get_console_web_uri", vm["id"], "example.org:9", {"protocol": "HTTPS"})
            assert https.startswith("wss://example.org:9/vm/serial/")
        finally:
            for v in (vm, other):
                await root.call("vm.delete", v["id"], {"force": True})


async def test_console_role(auth_daemon: Daemon) -> None:
    """VM_CONSOLE (scoped) or VM_WRITE may open the console; VM_READ may only see who is connected."""
    d = auth_daemon
    async with as_root(d) as root:
        vm = await root.call("vm.create", {"name": unique("ser"), "memory": 64, "autostart": False})
        reader, reader_pw, reader_id = await make_user(d)
        typist, typist_pw, typist_id = await make_user(d)
        await root.call("acl.create", {"user": reader_id, "role": "VM_READ", "vm": vm["id"]})
        await root.call("acl.create", {"user": typist_id, "role": "VM_CONSOLE", "vm": vm["id"]})
        try:
            async with logged_in(d, reader, reader_pw) as rpc:
                with pytest.raises(RpcError) as e:
                    await rpc.call("vm.get_console_web_uri", vm["id"])
                assert e.value.errno == errno.EACCES
                assert (await rpc.call("vm.get_console_viewers", vm["id"]))["viewers"] == []
            async with logged_in(d, typist, typist_pw) as rpc:
                uri = await rpc.call("vm.get_console_web_uri", vm["id"], "", {"read_only": True})
                with pytest.raises(RpcError) as e:
                    await rpc.call("vm.update", vm["id"], {"description": "no"})
                assert e.value.errno == errno.EACCES
                with pytest.raises(RpcError) as e:
                    await rpc.call("vm.get_console_web_uri", vm["id"], "", {"protocol": "GOPHER"})
                assert e.value.code == -32602
                spare = await rpc.call("vm.get_console_web_uri", vm["id"])
                assert await rpc.call("auth.login_with_token", spare.split("auth_token=")[1]) is False
            async with aiohttp.ClientSession() as s, s.ws_connect(uri) as ws:
                assert b"connected read-only" in await read_until(ws, b"not running", 10)
                await ws.send_bytes(b"x")
                await read_until(ws, b"read-only: nobody may type", 10)
        finally:
            await root.call("vm.delete", vm["id"], {"force": True})


async def test_unknown_vm(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("vm.get_console_web_uri", 999999)
    assert e.value.errno == errno.ENOENT and "does not exist" in str(e.value.reason)


async def test_deleting_the_vm_ends_the_console(unix_rpc: Rpc) -> None:
    vm = await unix_rpc.call("vm.create", {"name": unique("ser"), "memory": 64, "autostart": False})
    uri = await unix_rpc.call("vm.get_console_web_uri", vm["id"])
    async with aiohttp.ClientSession() as s, s.ws_connect(uri) as ws:
        await read_until(ws, b"not running", 10)
        await unix_rpc.call("vm.delete", vm["id"])
        await read_until(ws, b"the VM was deleted", 10)
        msg = await asyncio.wait_for(ws.receive(), 10)
        assert msg.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED)
