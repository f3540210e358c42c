"""Transport security: TLS (wss://) with SCRAM channel binding, the Origin check, the rate limit of
unauthenticated calls and the growing delay after failed logins (default limits, a daemon of its own)."""
from __future__ import annotations

import base64
import shutil
import os
import sys
import hashlib
import hmac
import secrets
import ssl
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import pytest

from tests.integration.test_auth_daemon import as_root, auth_daemon, connect, error_of, make_user
from tests.support import Daemon, Rpc, RpcError, cleanup_libvirt, free_port, stop_daemon, unique, write_config

__all__ = ["auth_daemon"]


@pytest.fixture(scope="module")
def tls_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A daemon with default limits, TLS on its TCP listener and one allowed browser origin."""
    with tempfile.TemporaryDirectory(prefix="mwtls-") as tmp:
        d = launch(Path(tmp))
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool)


def launch(tmp: Path) -> Daemon:
    """Start a daemon whose [server] section has TLS keys (start_daemon's extra can only add sections)."""
    if shutil.which("openssl") is None:
        pytest.skip("needs the openssl command")
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "2",
                    "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)], check=True, capture_output=True)
    port, pool = free_port(), unique("mwtls")
    config = write_config(tmp, port, pool, "[auth]\napi_key_iterations = 50000\n")
    config.write_text(config.read_text().replace("[server]\n", f'[server]\ntls_certificate = "{cert}"\n'
                      f'tls_private_key = "{key}"\nallowed_origins = ["https://ui.example"]\n', 1))
    log_path = tmp / "daemon.log"
    with open(log_path, "ab") as log:
        proc = subprocess.Popen([sys.executable, "-m", "middlewared", "--config", str(config)], stdout=log,
                                stderr=subprocess.STDOUT, env=dict(os.environ, PYTHONUNBUFFERED="1"))
    d = Daemon(proc, tmp, config, f"{tmp}/middlewared.sock", port, pool, log_path)
    deadline = time.monotonic() + 20
    while not os.path.exists(d.socket):
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"daemon did not start:\n{d.log()}")
        time.sleep(0.05)
    return d


def wss(d: Daemon) -> str:
    return f"wss://127.0.0.1:{d.port}/api/current"


NO_VERIFY = ssl.create_default_context()
NO_VERIFY.check_hostname = False
NO_VERIFY.verify_mode = ssl.CERT_NONE


async def open_wss(d: Daemon, session: aiohttp.ClientSession, **headers: str) -> Rpc:
    return Rpc(await session.ws_connect(wss(d), ssl=NO_VERIFY, headers=headers or None))


def _hmac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha512).digest()


async def bound_scram(rpc: Rpc, username: str, key: str, binding: bytes) -> dict[str, Any]:
    """A SCRAM-PLUS exchange (tls-server-end-point) with the given binding; returns the final answer.

    The official client (tests/integration/test_official_client.py) always sends the right binding: a wrong
    one, as a man in the middle would present, can only be sent by hand."""
    key_id, secret = key.split("-", 1)
    header = "p=tls-server-end-point,,"
    bare = f"n={username}:{key_id},r={base64.b64encode(secrets.token_bytes(32)).decode()}"
    first = await rpc.call("auth.login_ex", {"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE",
                                             "rfc_str": header + bare})
    fields = dict(p.split("=", 1) for p in first["rfc_str"].split(","))
    salted = hashlib.pbkdf2_hmac("sha512", secret.encode(), base64.b64decode(fields["s"]), int(fields["i"]))
    client_key = _hmac(salted, b"Client Key")
    without_proof = f"c={base64.b64encode(header.encode() + binding).decode()},r={fields['r']}"
    auth_message = f"{bare},{first['rfc_str']},{without_proof}".encode()
    proof = bytes(a ^ b for a, b in zip(client_key, _hmac(hashlib.sha512(client_key).digest(), auth_message)))
    answer: dict[str, Any] = await rpc.call("auth.login_ex", {
        "mechanism": "SCRAM", "scram_type": "CLIENT_FINAL_MESSAGE",
        "rfc_str": f"{without_proof},p={base64.b64encode(proof).decode()}"})
    return answer


async def test_tls_listener_and_channel_binding(tls_daemon: Daemon) -> None:
    username, _, _ = await make_user(tls_daemon, ["VM_READ"])
    async with as_root(tls_daemon) as root:
        key = (await root.call("api_key.create", {"name": "tls", "username": username}))["key"]
    async with aiohttp.ClientSession() as s:
        rpc = await open_wss(tls_daemon, s)
        assert await rpc.call("core.ping") == "pong"
        # Bound to another certificate than the server's (a man in the middle): refused.
        assert (await bound_scram(rpc, username, key, b"\0" * 32)) == {"response_type": "AUTH_ERR"}
        await rpc.ws.close()
        with pytest.raises(aiohttp.ClientError):
            await s.ws_connect(f"ws://127.0.0.1:{tls_daemon.port}/api/current")  # plain text is refused


async def test_channel_binding_needs_tls(auth_daemon: Daemon) -> None:
    username, _, _ = await make_user(auth_daemon, ["VM_READ"])
    async with connect(auth_daemon.url) as rpc:
        answer = await rpc.call("auth.login_ex", {"mechanism": "SCRAM", "scram_type": "CLIENT_FIRST_MESSAGE",
                                                  "rfc_str": f"p=tls-server-end-point,,n={username}:1,r="
                                                             + base64.b64encode(b"x" * 32).decode()})
        assert answer == {"response_type": "AUTH_ERR"}


async def test_browser_origins(tls_daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        for origin in ("https://ui.example", f"https://127.0.0.1:{tls_daemon.port}"):
            rpc = await open_wss(tls_daemon, s, Origin=origin)
            assert await rpc.call("core.ping") == "pong"
            await rpc.ws.close()
        with pytest.raises(aiohttp.WSServerHandshakeError) as e:
            await open_wss(tls_daemon, s, Origin="https://evil.example")
        assert e.value.status == 403
    async with connect("", tls_daemon.socket, Origin="https://evil.example") as root:
        assert await root.call("core.ping") == "pong"  # the unix socket is not a browser's


async def test_unauthenticated_calls_are_rate_limited(tls_daemon: Daemon) -> None:
    """20 unauthenticated calls per minute per address, whatever the methods, then none for the cool-down."""
    # From an address of its own (all of 127/8 is this host), so the other tests' calls do not count.
    connector = aiohttp.TCPConnector(local_addr=("127.0.0.2", 0))
    async with aiohttp.ClientSession(connector=connector) as s:
        rpc = await open_wss(tls_daemon, s)
        for n in range(20):
            method = ("core.ping", "auth.login_with_token")[n % 2]
            await rpc.call(method, *(["no-such-token"] if method == "auth.login_with_token" else []))
        assert (await error_of(rpc, "core.ping")).reason == "[EBUSY] Rate Limit Exceeded"
        assert (await error_of(rpc, "auth.login_with_token", "x")).errno == 16  # every method, once over
        assert await rpc.call("core.set_options", {}) is not None  # never limited
        assert "SCRAM" in await rpc.call("auth.mechanism_choices")  # never limited either
        other = await open_wss(tls_daemon, s)
        assert (await error_of(other, "core.ping")).errno == 16  # per address, not per connection
        await rpc.ws.close()
        await other.ws.close()
    async with aiohttp.ClientSession() as s:
        rpc = await open_wss(tls_daemon, s)
        assert await rpc.call("core.ping") == "pong"  # other addresses are not affected
        await rpc.ws.close()


async def test_failed_logins_are_slowed_more_and_more(tls_daemon: Daemon) -> None:
    username, password, _ = await make_user(tls_daemon, ["VM_READ"])
    async with aiohttp.ClientSession() as s:
        rpc = await open_wss(tls_daemon, s)
        delays = []
        for _ in range(3):
            started = time.monotonic()
            assert await rpc.call("auth.login", username, "wrong-password") is False
            delays.append(time.monotonic() - started)
        assert delays[0] >= 1.0 and delays[2] >= 2.0, delays
        started = time.monotonic()
        assert await rpc.call("auth.login", username, password) is True
        assert time.monotonic() - started < 1.0  # a right password is not delayed
        await rpc.ws.close()
