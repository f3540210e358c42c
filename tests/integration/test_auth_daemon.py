"""A daemon for the auth tests (fast API key hashing, no login delay, no rate limit) and helpers on it.

Other auth test modules import the fixtures and helpers from here.
"""
from __future__ import annotations

import tempfile
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

import aiohttp
import pytest

from tests.support import Daemon, Rpc, RpcError, cleanup_libvirt, open_rpc, start_daemon, stop_daemon, unique

FAST = """
[auth]
api_key_iterations = 50000
failed_login_delay = 0.0
rate_limit_calls = 100000
failed_logins_per_address = 100000
"""


@pytest.fixture(scope="session")
def auth_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A private daemon whose accounts the auth tests may change freely."""
    with tempfile.TemporaryDirectory(prefix="mwauth-") as tmp:
        d = start_daemon(Path(tmp), pool=unique("mwauth"), extra=FAST)
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool)


@asynccontextmanager
async def connect(url: str, socket: str | None = None, source: str | None = None, **headers: str
                  ) -> AsyncIterator[Rpc]:
    """A raw JSON-RPC connection (TCP, from the loopback address `source` if given; or the unix socket when socket
    is given)."""
    connector: aiohttp.BaseConnector | None = aiohttp.UnixConnector(path=socket) if socket else None
    if source:
        connector = aiohttp.TCPConnector(local_addr=(source, 0))
    async with aiohttp.ClientSession(connector=connector) as s:
        rpc = Rpc(await s.ws_connect("ws://localhost/api/current" if socket else url, max_msg_size=0,
                                     headers=headers or None))
        try:
            yield rpc
        finally:
            await rpc.ws.close()


@asynccontextmanager
async def as_root(d: Daemon) -> AsyncIterator[Rpc]:
    """root over the unix socket."""
    async with connect("", d.socket) as rpc:
        yield rpc


@asynccontextmanager
async def logged_in(d: Daemon, username: str, password: str) -> AsyncIterator[Rpc]:
    """A TCP session logged in with a password."""
    async with connect(d.url) as rpc:
        answer = await rpc.call("auth.login_ex", {"mechanism": "PASSWORD_PLAIN", "username": username,
                                                  "password": password})
        assert answer["response_type"] == "SUCCESS", answer
        yield rpc


async def make_user(d: Daemon, roles: list[str] | None = None, **fields: Any) -> tuple[str, str, int]:
    """A new account: (username, password, id)."""
    username, password = unique("u"), unique("pw-")
    async with as_root(d) as root:
        user = await root.call("user.create", {"username": username, "password": password,
                                               "roles": roles or [], **fields})
    return username, password, user["id"]


async def error_of(rpc: Rpc, method: str, *params: Any) -> RpcError:
    """The error a call answers with (fails the test if it succeeds)."""
    with pytest.raises(RpcError) as e:
        await rpc.call(method, *params)
    return e.value


async def test_root_on_the_unix_socket_administers(auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root:
        me = await root.call("auth.me")
        assert me["pw_name"] == "root" and "FULL_ADMIN" in me["privilege"]["roles"]
        users = await root.call("user.query", [["username", "=", "root"]])
        assert users[0]["builtin"] and users[0]["roles"] == ["FULL_ADMIN"]


async def test_first_run_root_password(auth_daemon: Daemon) -> None:
    async with connect(auth_daemon.url) as anon:
        answer = await anon.call("auth.login_ex", {"mechanism": "PASSWORD_PLAIN", "username": "root",
                                                   "password": "whatever-at-all"})
        assert answer == {"response_type": "AUTH_ERR"}  # no password set yet: no password login
    async with as_root(auth_daemon) as root:
        assert await root.call("user.set_root_password", "first-run-secret") is None
        assert (await root.call("user.get_instance", 1))["password_set"] is True
    async with logged_in(auth_daemon, "root", "first-run-secret") as rpc:
        assert (await rpc.call("auth.me"))["privilege"]["roles"] == ["FULL_ADMIN"]
