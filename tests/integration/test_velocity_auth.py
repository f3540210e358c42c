"""Velocity /u/auth: authkeys as Bearer, in the body and in the old upload header; refresh, logout, expiry;
and the ``{code, message}`` body of every error, malformed requests included."""
from __future__ import annotations

import asyncio
from typing import Iterator

import aiohttp
import pytest

from tests.integration.test_auth_daemon import connect as connect_tcp
from tests.integration.test_auth_daemon import error_of
from tests.integration.velocity_support import (ROOT_PASSWORD, Client, as_root, new_user, private_daemon, rest,
                                                velocity_daemon)
from tests.support import Daemon, connect, unique

__all__ = ["velocity_daemon"]


async def test_login_with_username_or_name(velocity_daemon: Daemon) -> None:
    async with rest(velocity_daemon) as v:
        for field in ("username", "name"):
            answer = await v("POST", "/u/auth", {field: "root", "password": ROOT_PASSWORD})
            assert answer.status == 200 and set(answer.body) == {"authkey", "expires"}
        wrong = await v("POST", "/u/auth", {"username": "root", "password": "wrong"})
        assert (wrong.status, wrong.code) == (403, 1100) and wrong.body["message"]
        unknown = await v("POST", "/u/auth", {"username": unique("nobody"), "password": "x"})
        assert (unknown.status, unknown.code) == (403, 1100)
        nameless = await v("POST", "/u/auth", {"password": "x"})
        assert (nameless.status, nameless.code) == (400, 1131)


async def test_authkey_as_bearer_in_body_and_in_header(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        key = root.key
        assert (await root("POST", "/u/user")).body["name"] == "root"
        assert (await root.as_key(key, in_body=True)("POST", "/u/user")).body["name"] == "root"
        header = await root.as_key(None)("POST", "/u/user", {}, headers={"x-velocity-authkey": str(key)})
        assert header.status == 200 and header.body["uid"] == 1
        # vCMD-shaped: the key in the body next to the fields, no Authorization header.
        listed = await root.as_key(key, in_body=True)("POST", "/u/user/list")
        assert listed.status == 200 and {"uid": 1, "name": "root"} in listed.body["users"]


async def test_every_error_is_code_and_message(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        anonymous = root.as_key(None)
        cases = [
            (await anonymous("POST", "/u/auth", data=b"{not json"), 400, 1130),
            (await anonymous("POST", "/u/auth", data=b"[1, 2]"), 400, 1130),
            (await anonymous("POST", "/u/auth", {"username": 5, "password": "x"}), 400, 1131),
            (await anonymous("POST", "/u/user"), 401, 100),
            (await anonymous.as_key("not-a-key")("POST", "/u/user"), 401, 101),
            (await root("POST", "/u/user", data=b"\xff\xfe"), 400, 2130),
            (await root("PUT", "/u/group", {"name": "x"}), 400, 5231),
            (await root("POST", "/u/group", {"gid": "one"}), 400, 5131),
            (await root("POST", "/u/nothing/here"), 404, 0),
            (await root("GET", "/u/user/list"), 405, 0),
            (await root("POST", "/u/user", data=b"x" * (2 << 20)), 413, 2132),
        ]
        for answer, status, code in cases:
            assert (answer.status, answer.code) == (status, code), answer
            assert set(answer.body) == ({"code", "message", "reason"} if status == 400 else {"code", "message"})
            assert answer.body["message"] and answer.body.get("reason", answer.body["message"]) == \
                answer.body["message"]
    assert "Traceback" not in velocity_daemon.log()


async def test_refresh_and_logout(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        old = root.key
        fresh = await root.as_key(None)("PATCH", "/u/auth", {"authkey": old})
        assert fresh.status == 200 and fresh.body["authkey"] != old
        assert (await root("POST", "/u/user")).code == 101  # the old key ended with the refresh
        new = root.as_key(fresh.body["authkey"])
        assert (await new("POST", "/u/user")).status == 200
        again = await root.as_key(None)("PATCH", "/u/auth", {"authkey": old})
        assert (again.status, again.code) == (403, 1400)
        newer = await new("PATCH", "/u/auth")  # Bearer works for the refresh too
        assert newer.status == 200
        assert (await root.as_key(None)("DELETE", "/u/auth", {"authkey": "never-issued"})).status == 200
        # Logging out ends the key at once, whether it comes in the body or as Bearer.
        last = root.as_key(newer.body["authkey"])
        assert (await root.as_key(None)("DELETE", "/u/auth", {"authkey": last.key})).status == 200
        assert (await last("POST", "/u/user")).code == 101
        other = await root.as_key(None).login("root", ROOT_PASSWORD)
        assert (await other("DELETE", "/u/auth")).status == 200
        assert (await other("POST", "/u/user")).code == 101


async def test_keys_end_with_password_change_and_user_removal(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        uid, user = await new_user(root)
        assert (await user("POST", "/u/user")).status == 200
        async with connect(velocity_daemon) as rpc:
            await rpc.call("user.update", uid, {"password": "another-password"})
        assert (await user("POST", "/u/user")).code == 101
        user = await root.as_key(None).login((await root.ok("POST", "/u/user", {"uid": uid}))["name"],
                                             "another-password")
        await root.ok("DELETE", "/u/user", {"uid": uid})
        assert (await user("POST", "/u/user")).code == 101
        # A user disabled or locked over JSON-RPC loses its keys too.
        for change in ({"enabled": False}, {"locked": True}):
            uid, user = await new_user(root)
            async with connect(velocity_daemon) as rpc:
                await rpc.call("user.update", uid, change)
            assert (await user("POST", "/u/user")).code == 101, change


@pytest.fixture(scope="module")
def short_keys(libvirtd: str) -> Iterator[Daemon]:
    """A daemon whose authkeys live 2 s after their last use."""
    with private_daemon("mwvelk", lambda c: c.replace("authkey_lifetime = 60", "authkey_lifetime = 2")) as d:
        yield d


async def test_expiry_slides_with_use(short_keys: Daemon) -> None:
    async with as_root(short_keys) as root:
        for _ in range(3):  # used every 1.2 s, the key outlives its 2 s lifetime
            await asyncio.sleep(1.2)
            assert (await root("POST", "/u/user")).status == 200
        await asyncio.sleep(2.5)
        assert (await root("POST", "/u/user")).code == 101
    async with as_root(short_keys) as root:
        await asyncio.sleep(2.5)
        expired = await root.as_key(None)("PATCH", "/u/auth", {"authkey": root.key})
        assert (expired.status, expired.code) == (403, 1401)


async def test_unknown_paths_answer_json_not_html(velocity_daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as session:
        v = Client(session, velocity_daemon)
        for path in ("/u", "/m/x", "/v/vm/list/extra"):
            answer = await v("POST", path)
            assert answer.status == 404 and answer.headers["Content-Type"].startswith("application/json")


async def test_failed_logins_lock_the_name_out_of_that_address_as_over_json_rpc(velocity_daemon: Daemon) -> None:
    """JSON-RPC and REST failures count together; the name is refused from that address only."""
    async with as_root(velocity_daemon) as root:
        name, password = unique("vu"), unique("pw-")
        await root.ok("PUT", "/u/user", {"name": name, "password": password})
        anonymous = root.as_key(None)
        async with connect_tcp(velocity_daemon.url) as rpc:
            for _ in range(5):
                assert await rpc.call("auth.login", name, "wrong") is False
            for _ in range(5):
                assert (await anonymous("POST", "/u/auth", {"username": name, "password": "wrong"})).code == 1100
            locked = await anonymous("POST", "/u/auth", {"username": name, "password": password})
            assert (locked.status, locked.code) == (403, 1101)
            assert "from this address" in locked.body["message"]
            assert (await error_of(rpc, "auth.login", name, password)).errno == 16
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))) as session:
            await Client(session, velocity_daemon).login(name, password)


async def test_browsers_on_other_origins_may_call(velocity_daemon: Daemon) -> None:
    """Velocity's web interface runs on another origin: preflights pass and answers carry CORS headers."""
    async with as_root(velocity_daemon) as root:
        async with root.session.options(f"{root.base}/u/auth", headers={
                "Origin": "http://localhost:4200", "Access-Control-Request-Method": "POST",
                "Access-Control-Request-Headers": "content-type"}) as preflight:
            assert preflight.status == 204
            assert preflight.headers["Access-Control-Allow-Origin"] == "*"
            assert "POST" in preflight.headers["Access-Control-Allow-Methods"]
            assert "x-velocity-authkey" in preflight.headers["Access-Control-Allow-Headers"]
        answer = await root("POST", "/u/user", headers={"Origin": "http://localhost:4200"})
        assert answer.status == 200 and answer.headers["Access-Control-Allow-Origin"] == "*"
        refused = await root.as_key(None)("POST", "/u/user")
        assert refused.status == 401 and refused.headers["Access-Control-Allow-Origin"] == "*"
