"""A daemon for the Velocity REST tests (fast logins, a media pool, a host NIC) and an HTTP client for it."""
from __future__ import annotations

import contextlib
import hashlib
import json
import random
import tempfile
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Iterator

import aiohttp
import pytest

from tests.support import Daemon, cleanup_libvirt, connect, start_daemon, stop_daemon, unique

ROOT_PASSWORD = "velocity-root-pw"


def nat_bridge(network: str) -> str:
    """The bridge interface of the daemon's NAT network (as the daemon names it)."""
    return "mwnat" + hashlib.sha1(network.encode()).hexdigest()[:8]


def velocity_config(tmp: Path, network: str | None = None) -> str:
    """Fast logins, a media pool, a private NAT network (a random /24) and its bridge as host NIC 1."""
    (tmp / "storage" / "pool1").mkdir(parents=True, exist_ok=True)
    network = network or unique("mwvnat")
    subnet = f"10.{random.randint(100, 250)}.{random.randint(0, 255)}"
    return f"""
[auth]
api_key_iterations = 50000
failed_login_delay = 0.0
rate_limit_calls = 100000
failed_logins_per_address = 100000

[velocity]
authkey_lifetime = 60
nat_network = "{network}"
nat_address = "{subnet}.1/24"

[[velocity.pools]]
mpid = 1
name = "local"
path = "{tmp}/storage/pool1"

[[velocity.nics]]
nicid = 1
bridge = "{nat_bridge(network)}"
description = "the NAT network's bridge"
"""


@contextlib.contextmanager
def private_daemon(prefix: str, edit: Callable[[str], str] = lambda config: config) -> Iterator[Daemon]:
    """A daemon of its own on velocity_config (changed by edit), removed with its domains and NAT network."""
    with tempfile.TemporaryDirectory(prefix=f"{prefix}-") as tmp:
        path = Path(tmp)
        (path / "storage").mkdir()
        network = unique("mwvnat")
        d = start_daemon(path, pool=unique(prefix), extra=edit(velocity_config(path, network)))
        d.nat_network = network  # type: ignore[attr-defined]
        try:
            yield d
        finally:
            stop_daemon(d)
            cleanup_libvirt(d.pool, path / "db" / "middlewared.db")
            remove_network(network)


@pytest.fixture(scope="session")
def velocity_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A private daemon whose accounts and groups the Velocity tests change freely (root's password set)."""
    with private_daemon("mwvel") as d:
        yield d


def remove_network(name: str) -> None:
    """Remove the NAT network a test daemon defined."""
    import libvirt
    conn = libvirt.open("qemu:///system")
    try:
        with contextlib.suppress(libvirt.libvirtError):
            network = conn.networkLookupByName(name)
            if network.isActive():
                network.destroy()
            network.undefine()
    finally:
        conn.close()


@dataclass
class Answer:
    """An HTTP answer: status, parsed JSON body (None when empty) and headers."""

    status: int
    body: Any
    headers: Any

    @property
    def code(self) -> int | None:
        return self.body.get("code") if isinstance(self.body, dict) else None


class Client:
    """Requests against one daemon's REST API, optionally with an authkey (Bearer, or in the body)."""

    def __init__(self, session: aiohttp.ClientSession, daemon: Daemon, key: str | None = None,
                 in_body: bool = False) -> None:
        self.session = session
        self.daemon = daemon
        self.key = key
        self.in_body = in_body

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.daemon.port}"

    def as_key(self, key: str | None, in_body: bool = False) -> "Client":
        return Client(self.session, self.daemon, key, in_body)

    async def __call__(self, method: str, path: str, body: Any = None, *, data: Any = None,
                       headers: dict[str, str] | None = None) -> Answer:
        headers = dict(headers or {})
        if self.key and not self.in_body:
            headers["Authorization"] = f"Bearer {self.key}"
        if self.key and self.in_body:
            body = {**(body or {}), "authkey": self.key}
        if data is None and body is not None:
            data, headers["Content-Type"] = json.dumps(body), "application/json"
        async with self.session.request(method, self.base + path, data=data, headers=headers) as r:
            raw = await r.read()
            return Answer(r.status, json.loads(raw) if raw else None, r.headers)

    async def ok(self, method: str, path: str, body: Any = None) -> Any:
        """The body of a 200 answer (fails the test otherwise)."""
        answer = await self(method, path, body)
        assert answer.status == 200, (method, path, answer)
        return answer.body

    async def login(self, name: str, password: str) -> "Client":
        body = await self.ok("POST", "/u/auth", {"username": name, "password": password})
        return self.as_key(body["authkey"])


@asynccontextmanager
async def rest(daemon: Daemon) -> AsyncIterator[Client]:
    """An anonymous client; root's password is set first."""
    async with connect(daemon) as rpc:
        await rpc.call("user.set_root_password", ROOT_PASSWORD)
    async with aiohttp.ClientSession() as session:
        yield Client(session, daemon)


@asynccontextmanager
async def as_root(daemon: Daemon) -> AsyncIterator[Client]:
    """root, logged in over REST."""
    async with rest(daemon) as anonymous:
        yield await anonymous.login("root", ROOT_PASSWORD)


async def new_user(root: Client, grants: dict[int, list[str]] | None = None) -> tuple[int, Client]:
    """A new user holding permissions on groups ({gid: [permission, ...]}), and a client logged in as it."""
    name, password = unique("vu"), unique("pw-")
    uid = (await root.ok("PUT", "/u/user", {"name": name, "password": password}))["uid"]
    for gid, names in (grants or {}).items():
        for permission in names:
            await root.ok("PUT", "/u/user/permission", {"uid": uid, "gid": gid, "permission": permission})
    return uid, await root.as_key(None).login(name, password)


async def new_group(root: Client, parent: int = 0) -> int:
    gid: int = (await root.ok("PUT", "/u/group", {"name": unique("g"), "parent_gid": parent}))["gid"]
    return gid
