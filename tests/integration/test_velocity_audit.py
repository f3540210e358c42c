"""Velocity requests in the audit log audit.query reads: writes succeeded or refused, logins and logouts,
reads left out as JSON-RPC's are, and no password or authkey in any record."""
from __future__ import annotations

import json
from typing import Any

from tests.integration.test_velocity_media import assign, upload
from tests.integration.velocity_support import ROOT_PASSWORD, as_root, new_group, new_user, rest, velocity_daemon
from tests.support import Daemon, connect, unique

__all__ = ["velocity_daemon"]


async def records(daemon: Daemon, *filters: list[Any]) -> list[dict[str, Any]]:
    """The daemon's REST audit records matching filters, oldest first."""
    async with connect(daemon) as rpc:
        found: list[dict[str, Any]] = await rpc.call("audit.query", [["service", "=", "VELOCITY"], *filters])
    return found


async def test_a_write_is_recorded_with_its_user_route_and_session(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        name = unique("g")
        gid = (await root.ok("PUT", "/u/group", {"name": name, "parent_gid": 0}))["gid"]
    login, = [r for r in await records(velocity_daemon, ["event", "=", "AUTHENTICATION"], ["username", "=", "root"],
                                       ["success", "=", True])][-1:]
    write, = await records(velocity_daemon, ["method", "=", "PUT /u/group"], ["params.name", "=", name])
    assert (write["event"], write["username"], write["success"], write["error"]) == ("METHOD_CALL", "root", True, None)
    assert write["params"] == {"name": name, "parent_gid": 0}
    assert write["origin"].startswith("TCP:127.0.0.1:")
    # The session names the login the authkey came from (not the key itself).
    assert write["session"] == login["session"] and write["session"]
    assert login["method"] == "POST /u/auth" and login["params"]["password"] == "********"
    async with connect(velocity_daemon) as rpc:  # the same records JSON-RPC's calls go to
        assert await rpc.call("vm_group.get_instance", gid)


async def test_refusals_are_recorded_with_their_error(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        uid, user = await new_user(root)
        name = unique("g")
        refused = await user("PUT", "/u/group", {"name": name, "parent_gid": 0})
        assert (refused.status, refused.code) == (403, 5200)
        anonymous = await root.as_key(None)("DELETE", "/u/group", {"gid": 12345})
        assert anonymous.status == 401
        malformed = await root("PATCH", "/u/group", data=b"{oops")
        assert malformed.status == 400
        username = (await root.ok("POST", "/u/user", {"uid": uid}))["name"]
    by_user, = await records(velocity_daemon, ["method", "=", "PUT /u/group"], ["params.name", "=", name])
    assert (by_user["username"], by_user["success"]) == (username, False)
    assert by_user["error"].startswith("HTTP 403, code 5200: ")
    nobody = (await records(velocity_daemon, ["method", "=", "DELETE /u/group"], ["params.gid", "=", 12345]))[-1]
    assert (nobody["username"], nobody["success"]) == (None, False) and "code 100:" in nobody["error"]
    bad_body = (await records(velocity_daemon, ["method", "=", "PATCH /u/group"]))[-1]
    assert bad_body["success"] is False and "HTTP 400, code 5430" in bad_body["error"]


async def test_logins_failed_or_not_and_logouts(velocity_daemon: Daemon) -> None:
    async with rest(velocity_daemon) as anonymous:
        name = unique("nobody")
        wrong = await anonymous("POST", "/u/auth", {"name": name, "password": "not-the-password"})
        assert (wrong.status, wrong.code) == (403, 1100)
        key = (await anonymous.ok("POST", "/u/auth", {"username": "root", "password": ROOT_PASSWORD}))["authkey"]
        fresh = (await anonymous.ok("PATCH", "/u/auth", {"authkey": key}))["authkey"]
        assert (await anonymous("DELETE", "/u/auth", {"authkey": fresh})).status == 200
    failed, = await records(velocity_daemon, ["event", "=", "AUTHENTICATION"], ["username", "=", name])
    assert (failed["method"], failed["success"]) == ("POST /u/auth", False)
    assert "code 1100" in failed["error"] and failed["params"] == {"name": name, "password": "********"}
    login = (await records(velocity_daemon, ["event", "=", "AUTHENTICATION"], ["success", "=", True]))[-1]
    refresh = (await records(velocity_daemon, ["method", "=", "PATCH /u/auth"]))[-1]
    logout = (await records(velocity_daemon, ["event", "=", "LOGOUT"]))[-1]
    assert refresh["username"] == logout["username"] == "root"
    assert login["session"] == refresh["session"] == logout["session"]  # one login, refreshed, then ended


async def test_reads_are_not_recorded(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        before = len(await records(velocity_daemon))
        await root.ok("POST", "/u/user/list")
        await root.ok("POST", "/u/group/list")
        await root.ok("POST", "/v/vm/list", {"gid": 0})
        assert len(await records(velocity_daemon)) == before


async def test_no_password_or_authkey_in_any_record(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        _, user = await new_user(root, {0: ["velocity.user.create"]})
        password = unique("secret-pw-")
        await user.as_key(user.key, in_body=True).ok("PUT", "/u/user", {"name": unique("vu"), "password": password})
        await user("PUT", "/u/user", {"name": "", "password": password})  # refused by the schema
        gid = await new_group(root)
        await assign(root, gid)
        assert (await upload(root.as_key(None), gid, b"abc", **{"x-velocity-authkey": str(root.key)})).status == 200
        keys = {root.key, user.key}
    async with connect(velocity_daemon) as rpc:
        everything = json.dumps(await rpc.call("audit.query"))
    uploads = await records(velocity_daemon, ["method", "=", "PUT /m/media/upload"])
    assert uploads[-1]["params"]["authkey"] == "********" and uploads[-1]["params"]["gid"] == str(gid)
    for secret in (password, ROOT_PASSWORD, *keys):
        assert secret and str(secret) not in everything
