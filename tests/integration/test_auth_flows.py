"""Login flows as the official client, midclt and pytruenas run them; tokens, expiry, revocation, sessions."""
from __future__ import annotations

import asyncio
import base64
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from midclt import AsyncClient
from midclt.scram import scram_login
from tests.integration.test_auth_daemon import as_root, auth_daemon, connect, error_of, logged_in, make_user
from tests.support import Daemon, cleanup_libvirt, start_daemon, stop_daemon, unique

__all__ = ["auth_daemon"]


async def make_key(d: Daemon, username: str, **fields: Any) -> dict[str, Any]:
    async with as_root(d) as root:
        key: dict[str, Any] = await root.call("api_key.create", {"name": "k", "username": username, **fields})
        return key


async def test_password_login_ex_and_legacy_login(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    async with connect(auth_daemon.url) as rpc:
        bad = {"mechanism": "PASSWORD_PLAIN", "username": username, "password": "wrong-password"}
        assert await rpc.call("auth.login_ex", bad) == {"response_type": "AUTH_ERR"}
        assert await rpc.call("auth.login", username, "wrong-password") is False
        assert await rpc.call("auth.login", username, password) is True
        me = await rpc.call("auth.me")
        assert me["pw_name"] == username and me["privilege"]["roles"] == ["VM_READ"]
        assert me["account_attributes"] == ["LOCAL", "LOGIN_PASSWORD"]
        assert await rpc.call("auth.logout") is None
        assert (await error_of(rpc, "auth.me")).errno == 207


async def test_api_key_plain(auth_daemon: Daemon) -> None:
    username, _, _ = await make_user(auth_daemon, ["VM_READ"])
    key = await make_key(auth_daemon, username)
    key_id, secret = key["key"].split("-", 1)
    assert int(key_id) == key["id"] and len(secret) == 64 and secret.isalnum()
    async with as_root(auth_daemon) as root:
        shown = await root.call("api_key.get_instance", key["id"])
        assert "key" not in shown and shown["username"] == username  # the secret is shown once only
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_api_key", f"{key_id}-{'x' * 64}") is False
        assert await rpc.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": "root",
                                                "api_key": key["key"]}) == {"response_type": "AUTH_ERR"}
        answer = await rpc.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": username,
                                                  "api_key": key["key"]})
        assert answer["response_type"] == "SUCCESS" and answer["user_info"]["pw_name"] == username
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_api_key", key["key"]) is True
        assert (await rpc.call("auth.me"))["account_attributes"] == ["LOCAL", "API_KEY"]


async def test_scram_exchange_of_midclt(auth_daemon: Daemon) -> None:
    """This project's midclt speaks SCRAM too (the official client's exchange: test_official_client.py)."""
    username, _, _ = await make_user(auth_daemon, ["VM_READ"])
    key = await make_key(auth_daemon, username)
    async with connect(auth_daemon.url) as rpc:
        assert "SCRAM" in await rpc.call("auth.mechanism_choices")  # called before login by the client
        seen: list[dict[str, Any]] = []

        async def request(data: dict[str, Any]) -> Any:
            answer = await rpc.call("auth.login_ex", data)
            seen.append(answer)
            return answer
        await scram_login(request, username, key["key"])
        assert [a["scram_type"] for a in seen] == ["SERVER_FIRST_RESPONSE", "SERVER_FINAL_RESPONSE"]
        first = dict(p.split("=", 1) for p in seen[0]["rfc_str"].split(","))
        assert int(first["i"]) == key["iterations"] and base64.b64decode(first["s"]) == \
            base64.b64decode(key["salt"])
        assert len(base64.b64decode(first["r"])) == 64  # client nonce bytes + server nonce bytes
        assert (await rpc.call("auth.me"))["pw_name"] == username


async def test_scram_refuses_a_wrong_key(auth_daemon: Daemon) -> None:
    username, _, _ = await make_user(auth_daemon, ["VM_READ"])
    key = await make_key(auth_daemon, username)
    async with connect(auth_daemon.url) as rpc:
        async def request(data: dict[str, Any]) -> Any:
            return await rpc.call("auth.login_ex", data)
        for wrong in (f"{key['id']}-{'y' * 64}", f"99999-{'y' * 64}"):  # bad secret, unknown key id
            with pytest.raises(Exception, match="AUTH_ERR"):
                await scram_login(request, username, wrong)
        assert (await error_of(rpc, "auth.me")).errno == 207
        final_first = {"mechanism": "SCRAM", "scram_type": "CLIENT_FINAL_MESSAGE", "rfc_str": "c=biws,r=AA,p=AA"}
        assert await rpc.call("auth.login_ex", final_first) == {"response_type": "AUTH_ERR"}


async def test_midclt_logins(auth_daemon: Daemon, tmp_path: Any) -> None:
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    key = await make_key(auth_daemon, username)
    keyfile = tmp_path / "key"
    keyfile.write_text(key["key"] + "\n")
    keyfile.chmod(0o600)
    base = [sys.executable, "-m", "midclt", "-u", auth_daemon.url]
    for creds in (["-U", username, "-P", password], ["-U", username, "-K", key["key"]],
                  ["-K", str(keyfile)], ["-U", username, "-K", str(keyfile)]):
        proc = subprocess.run([*base, *creds, "call", "auth.me"], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, (creds, proc.stderr)
        assert f'"pw_name": "{username}"' in proc.stdout
    proc = subprocess.run([*base, "-U", username, "-P", "not-the-password", "call", "auth.me"],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1 and "Failed to login" in proc.stderr
    client = await AsyncClient.connect(auth_daemon.url)
    try:
        await client.login_with_api_key(key["key"], username)  # SCRAM
        assert (await client.call("auth.me"))["account_attributes"] == ["LOCAL", "API_KEY"]
    finally:
        await client.close()


async def test_tokens(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    async with logged_in(auth_daemon, username, password) as rpc:
        single = await rpc.call("auth.generate_token", 60, {}, True, True)
        multi = await rpc.call("auth.generate_token", 60)
        bound = await rpc.call("auth.generate_token", 60, {"job": 1})
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_token", bound) is False  # download tokens are not logins
        assert await rpc.call("auth.login_with_token", single) is True
        assert (await rpc.call("auth.me"))["account_attributes"] == ["LOCAL", "TOKEN"]
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_token", single) is False  # single use
        answer = await rpc.call("auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": multi})
        assert answer["response_type"] == "SUCCESS"


async def test_expired_key_and_expiring_session(auth_daemon: Daemon) -> None:
    username, _, _ = await make_user(auth_daemon, ["VM_READ"])
    past = await make_key(auth_daemon, username, expires_at={"$date": int((time.time() - 60) * 1000)})
    async with connect(auth_daemon.url) as rpc:
        answer = await rpc.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": username,
                                                  "api_key": past["key"]})
        assert answer == {"response_type": "EXPIRED"}
    async with as_root(auth_daemon) as root:
        soon = await root.call("api_key.create", {"name": "soon", "username": username,
                                                  "expires_at": {"$date": int((time.time() + 3) * 1000)}})
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_api_key", soon["key"]) is True
        assert await rpc.call("vm.query") is not None
        await asyncio.sleep(3.5)
        err = await error_of(rpc, "vm.query")
        assert err.errno == 13 and "Session is expired" in err.reason


async def _closed(rpc: Any) -> aiohttp.WSMessage:
    while True:
        msg = await asyncio.wait_for(rpc.ws.receive(), 10)
        if msg.type != aiohttp.WSMsgType.TEXT:
            return msg


async def test_revoking_a_key_ends_its_live_session(auth_daemon: Daemon) -> None:
    username, _, _ = await make_user(auth_daemon, ["VM_READ"])
    first, second = await make_key(auth_daemon, username), None
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_api_key", first["key"]) is True
        async with as_root(auth_daemon) as root:
            second = await root.call("api_key.create", {"name": "second", "username": username})
            assert await root.call("api_key.delete", first["id"]) is True
        msg = await _closed(rpc)
        assert (msg.type, msg.data, msg.extra) == (aiohttp.WSMsgType.CLOSE, 1008, "API key revoked")
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_api_key", first["key"]) is False
        assert await rpc.call("auth.login_with_api_key", second["key"]) is True
        async with as_root(auth_daemon) as root:
            renewed = await root.call("api_key.update", second["id"], {"reset": True})
        await _closed(rpc)
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login_with_api_key", second["key"]) is False
        assert await rpc.call("auth.login_with_api_key", renewed["key"]) is True


async def test_account_changes_apply_to_live_sessions(auth_daemon: Daemon) -> None:
    username, password, user_id = await make_user(auth_daemon, ["VM_READ"])
    async with logged_in(auth_daemon, username, password) as rpc:
        assert (await error_of(rpc, "user.query")).errno == 13
        async with as_root(auth_daemon) as root:
            await root.call("user.update", user_id, {"roles": ["ACCOUNT_READ"]})
        assert await rpc.call("user.query", [["id", "=", user_id]])
        async with as_root(auth_daemon) as root:
            await root.call("user.update", user_id, {"locked": True})
        await _closed(rpc)
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login", username, password) is False


async def test_message_limit_grows_after_login(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    big = {"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": ["x" * 20000]}
    async with logged_in(auth_daemon, username, password) as rpc:
        await rpc.send(big)
        assert (await rpc.receive())["error"]["code"] == -32602  # too many arguments, but read
    async with connect(auth_daemon.url) as rpc:
        await rpc.send(big)
        msg = await _closed(rpc)
        assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1007), msg


async def test_sessions_and_terminate(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    async with logged_in(auth_daemon, username, password) as victim, as_root(auth_daemon) as root:
        sessions = await root.call("auth.sessions", [["credentials_data.username", "=", username]])
        assert len(sessions) == 1 and sessions[0]["credentials"] == "LOGIN_PASSWORD"
        assert sessions[0]["origin"].startswith("TCP:127.0.0.1")
        mine = await root.call("auth.sessions", [["current", "=", True]], {"get": True})
        assert mine["internal"] is True
        assert (await error_of(root, "auth.terminate_session", mine["id"])).errno == 22
        assert await root.call("auth.terminate_session", sessions[0]["id"]) is True
        await _closed(victim)
        assert await root.call("auth.terminate_session", sessions[0]["id"]) is False


def test_pytruenas_logins(auth_daemon: Daemon) -> None:
    from pytruenas import TrueNASClient
    username, password, _ = asyncio.run(make_user(auth_daemon, ["VM_READ"]))
    key = asyncio.run(make_key(auth_daemon, username))
    for credentials, login_ex in ((f"{username}:{password}", False), (f"{username}:{password}", True),
                                  (key["key"], False)):
        client = TrueNASClient(auth_daemon.url, credentials=credentials, autologin=False)
        try:
            client.login(login_ex=login_ex)
            assert client.api.auth.me()["pw_name"] == username
        finally:
            client.close()
    client = TrueNASClient(auth_daemon.url, autologin=False)
    try:
        from pytruenas import Credentials
        client.login(Credentials(api_key=key["key"], username=username), login_ex=True)  # API_KEY_PLAIN
        assert client.api.auth.me()["account_attributes"] == ["LOCAL", "API_KEY"]
    finally:
        client.close()


async def test_audit_records_logins_and_writes(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["READONLY_ADMIN"])
    async with connect(auth_daemon.url) as rpc:
        await rpc.call("auth.login", username, "bad-password-here")
    async with logged_in(auth_daemon, username, password) as rpc:
        await error_of(rpc, "user.create", {"username": "x", "password": "secret-value-1"})
    async with as_root(auth_daemon) as root:
        records = await root.call("audit.query", [["username", "=", username]])
    failed, ok, write = records[-3:]
    assert (failed["event"], failed["success"], failed["error"]) == ("AUTHENTICATION", False, "AUTH_ERR")
    assert (ok["event"], ok["method"], ok["success"]) == ("AUTHENTICATION", "PASSWORD_PLAIN", True)
    assert (write["event"], write["method"], write["success"]) == ("METHOD_CALL", "user.create", False)
    assert "Not authorized" in write["error"] and write["params"][0]["password"] == "********"
    assert write["origin"].startswith("TCP:127.0.0.1")


async def test_logout_ends_subscriptions_it_no_longer_allows(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    async with connect(auth_daemon.url) as rpc:
        assert await rpc.call("auth.login", username, password) is True
        await rpc.call("core.subscribe", "vm.query")
        await rpc.call("core.subscribe", "core.get_jobs")
        await rpc.call("auth.logout")
        ended = await rpc.next_event(lambda m: m.get("method") == "notify_unsubscribed")
        assert ended["params"]["collection"] == "vm.query"
        assert ended["params"]["error"]["errname"] == "EACCES"


async def failed_job(rpc: Any) -> dict[str, Any]:
    """A job that fails (core.bulk of an unknown method), once it has ended, as core.get_jobs shows it."""
    job_id = await rpc.call("core.bulk", "no.such_method", [[]])
    for _ in range(200):
        job: dict[str, Any] = (await rpc.call("core.get_jobs", [["id", "=", job_id]]))[0]
        if job["state"] == "FAILED":
            return job
        await asyncio.sleep(0.05)
    raise AssertionError("the job did not fail")


async def test_tracebacks_only_for_full_admins(auth_daemon: Daemon) -> None:
    """Server tracebacks name its files: only full administrators (root on the unix socket too) get them."""
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    async with logged_in(auth_daemon, username, password) as rpc:
        denied = await error_of(rpc, "user.create", {"username": "x", "password": "y"})
        assert denied.errno == 13 and denied.data["trace"] is None
        invalid = await error_of(rpc, "vm.query", 5)
        assert invalid.code == -32602 and invalid.data["trace"] is None
        job = await failed_job(rpc)
        assert job["error"] and job["exception"] == "" and job["exc_info"]["errno"] == 2
    async with connect(auth_daemon.url) as anonymous:
        assert (await error_of(anonymous, "vm.query")).data["trace"] is None
    async with as_root(auth_daemon) as root:
        denied = await error_of(root, "vm.query", 5)
        assert "Traceback" in denied.data["trace"]["formatted"]
        assert "Traceback" in (await failed_job(root))["exception"]


async def test_failed_logins_lock_the_user_name_out_of_that_address_only(auth_daemon: Daemon) -> None:
    """Ten failures as one name from one address within ten minutes, by any mechanism, stop that name's logins from
    that address, even with the right password; the user still logs in from another address."""
    username, password, _ = await make_user(auth_daemon, ["VM_READ"])
    key = await make_key(auth_daemon, username)
    async with connect(auth_daemon.url) as rpc:
        for n in range(10):
            if n % 2:
                assert await rpc.call("auth.login", username, "wrong-password") is False
            else:
                assert await rpc.call("auth.login_ex", {"mechanism": "API_KEY_PLAIN", "username": username,
                                                        "api_key": f"{key['id']}-{'x' * 64}"}) == \
                    {"response_type": "AUTH_ERR"}
        locked = await error_of(rpc, "auth.login", username, password)
        assert locked.errno == 16 and "Too many failed logins for this user from this address" in locked.reason
        assert await rpc.call("auth.login", "root", "wrong-password") is False  # other names are not locked
    async with connect(auth_daemon.url, source="127.0.0.2") as elsewhere:
        assert await elsewhere.call("auth.login", username, password) is True


async def test_failures_over_many_names_lock_the_address_out(libvirtd: str) -> None:
    """The per-address limit counts failures as any user name; other addresses and root on the unix socket are
    not concerned."""
    with tempfile.TemporaryDirectory(prefix="mwauth-") as tmp:
        d = start_daemon(Path(tmp), pool=unique("mwauth"), extra="[auth]\nfailed_login_delay = 0.0\n"
                         "rate_limit_calls = 100000\nfailed_logins_per_address = 5\n")
        try:
            username, password, _ = await make_user(d, ["VM_READ"])
            async with connect(d.url) as rpc:
                for n in range(5):
                    assert await rpc.call("auth.login", unique(f"guess{n}"), "wrong-password") is False
                refused = await error_of(rpc, "auth.login", username, password)
                assert refused.errno == 16 and "Too many failed logins from this address" in refused.reason
                refused = await error_of(rpc, "auth.login_ex", {"mechanism": "TOKEN_PLAIN", "token": "x"})
                assert refused.errno == 16
            async with connect(d.url, source="127.0.0.2") as elsewhere:
                assert await elsewhere.call("auth.login", username, password) is True
            async with as_root(d) as root:
                assert (await root.call("auth.me"))["pw_name"] == "root"
        finally:
            stop_daemon(d)
            cleanup_libvirt(d.pool)
