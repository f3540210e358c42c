"""The official TrueNAS client, unmodified, against the daemon: the unix socket, ws:// and wss://, every
login it offers (password; API key by SCRAM with and without channel binding, and PLAIN), calls, jobs,
subscriptions, errors with their errno, and its midclt."""
from __future__ import annotations

import errno
import subprocess
import tempfile
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.integration.test_auth_daemon import FAST, as_root, auth_daemon, make_user
from tests.official_client import OfficialClient, official_client
from tests.support import Daemon, Rpc, cleanup_libvirt, start_daemon, stop_daemon, unique

__all__ = ["auth_daemon"]

ENOTAUTHENTICATED = 207


@pytest.fixture(scope="session")
def official() -> OfficialClient:
    return official_client()


@pytest.fixture(scope="module")
def tls_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A daemon serving wss:// with a self-signed certificate made here (fast key hashing, no login delay)."""
    with tempfile.TemporaryDirectory(prefix="mwofficial-") as tmp:
        cert, key = Path(tmp) / "cert.pem", Path(tmp) / "key.pem"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-sha256", "-nodes", "-days", "2",
                        "-subj", "/CN=localhost", "-keyout", str(key), "-out", str(cert)],
                       check=True, capture_output=True)
        d = start_daemon(Path(tmp), pool=unique("mwofficial"), extra=FAST,
                         server_extra=f'tls_certificate = "{cert}"\ntls_private_key = "{key}"\n')
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool)


async def account(d: Daemon, roles: list[str]) -> dict[str, str]:
    """A new user with a password and an API key."""
    username, password, _ = await make_user(d, roles)
    async with as_root(d) as root:
        key = (await root.call("api_key.create", {"name": unique("k"), "username": username}))["key"]
    return {"user": username, "password": password, "key": key}


# Every login the client offers, each on a connection of its own; "ok" or the exception it raised.
LOGINS = """
def attempt(login, **kw):
    try:
        with Client(ARGS["uri"], verify_ssl=False) as c:
            login(c, **kw)
            me = c.call("auth.me")
            return [me["pw_name"], me["account_attributes"][1], c.call("vm.query", [], {"count": True})]
    except Exception as e:
        return f"{type(e).__name__}: {e}"

password = lambda c: c.login_with_password(ARGS["user"], ARGS["password"])
key = lambda c, **kw: c.login_with_api_key(ARGS["user"], ARGS["key"], **kw)
wrong = lambda c, **kw: c.login_with_api_key(ARGS["user"], ARGS["key"][:-4] + "zzzz", **kw)
print(json.dumps({
    "password": attempt(password),
    "scram_bound": attempt(key),
    "scram_unbound": attempt(key, channel_binding=False),
    "plain": attempt(key, auth_mechanism=APIKeyAuthMech.PLAIN),
    "wrong_bound": attempt(wrong),
    "wrong_unbound": attempt(wrong, channel_binding=False),
    "wrong_password": attempt(lambda c: c.login_with_password(ARGS["user"], "not-the-password")),
}))
"""


async def test_logins_over_wss(official: OfficialClient, tls_daemon: Daemon) -> None:
    """SCRAM-SHA-512-PLUS (tls-server-end-point) is the client's default over wss://."""
    creds = await account(tls_daemon, ["VM_READ"])
    got = official.run(LOGINS, {"uri": f"wss://127.0.0.1:{tls_daemon.port}/api/current", **creds})
    user = creds["user"]
    assert got["password"] == [user, "LOGIN_PASSWORD", 0]
    assert got["scram_bound"] == got["scram_unbound"] == got["plain"] == [user, "API_KEY", 0]
    assert got["wrong_bound"].startswith("ValueError") and got["wrong_unbound"].startswith("ValueError")
    assert got["wrong_password"].startswith("ValueError")


async def test_logins_over_ws(official: OfficialClient, auth_daemon: Daemon) -> None:
    """Over plain ws:// the client itself refuses a bound exchange; unbound SCRAM and PLAIN work."""
    creds = await account(auth_daemon, ["VM_READ"])
    got = official.run(LOGINS, {"uri": auth_daemon.url, **creds})
    user = creds["user"]
    assert got["password"] == [user, "LOGIN_PASSWORD", 0]
    assert got["scram_bound"].startswith("ValueError: channel binding is required")
    assert got["scram_unbound"] == got["plain"] == [user, "API_KEY", 0]
    assert got["wrong_unbound"].startswith("ValueError")


async def test_logins_on_the_unix_socket(official: OfficialClient, auth_daemon: Daemon) -> None:
    """Root is logged in on the socket already; a login there becomes the account's (no channel binding)."""
    creds = await account(auth_daemon, ["VM_READ"])
    got = official.run(LOGINS, {"uri": auth_daemon.unix_uri, **creds})
    user = creds["user"]
    assert got["password"] == [user, "LOGIN_PASSWORD", 0]
    assert got["scram_bound"] == got["scram_unbound"] == got["plain"] == [user, "API_KEY", 0]
    assert got["wrong_bound"].startswith("ValueError")


CALLS = """
import threading
out = {}

def error_of(method, *params):
    try:
        c.call(method, *params)
    except ValidationErrors as e:
        return ["ValidationErrors", e.errno, [list(x) for x in e.errors]]
    except ClientException as e:
        return ["ClientException", e.errno, e.error, e.trace is not None]
    return None

with Client(ARGS["uri"]) as c:
    out["ping"] = c.ping()
    out["me"] = c.call("auth.me")["pw_name"]
    out["job"] = c.call("core.bulk", "core.ping", [[]] * 3, job=True)
    out["vm_start_missing"] = error_of("vm.start", 999999)
    out["validation"] = error_of("core.subscribe", 5)
    out["no_method"] = error_of("no.such_method")
    try:
        c.call("core.bulk", "no.such_method", [[]], job=True)
    except ClientException as e:
        out["job_failed"] = e.error
    seen, arrived = [], threading.Event()

    def on_event(mtype, **message):
        seen.append([mtype, message["collection"]])
        arrived.set()
    c.subscribe("core.get_jobs", on_event)
    c.call("core.bulk", "core.ping", [[]], job=True)
    out["event"] = seen[0] if arrived.wait(10) else None
print(json.dumps(out))
"""


async def test_calls_jobs_events_and_errors_on_the_unix_socket(official: OfficialClient, daemon: Daemon) -> None:
    got = official.run(CALLS, {"uri": daemon.unix_uri})
    assert got["ping"] == "pong" and got["me"] == "root"
    assert got["job"] == [{"job_id": None, "result": "pong", "error": None}] * 3
    # A missing VM is a failed lookup with its own errno, not an invalid parameter.
    assert got["vm_start_missing"][:3] == ["ClientException", errno.ENOENT, "[ENOENT] VM 999999 does not exist"]
    assert got["validation"][0] == "ValidationErrors" and got["validation"][2][0][0] == "name"
    assert got["no_method"][0] == "ClientException" and "does not exist" in got["no_method"][2]
    assert "no.such_method" in got["job_failed"]
    assert got["event"] == ["ADDED", "core.get_jobs"]


ANONYMOUS = """
with Client(ARGS["uri"]) as c:
    try:
        c.call("vm.query")
    except ClientException as e:
        print(json.dumps([e.errno, e.error, e.trace]))
"""


async def test_errno_of_an_anonymous_call_over_ws(official: OfficialClient, auth_daemon: Daemon) -> None:
    got = official.run(ANONYMOUS, {"uri": auth_daemon.url})
    assert got == [ENOTAUTHENTICATED, "[ENOTAUTHENTICATED] Not authenticated", None]  # no server traceback


async def test_midclt_call_job_subscribe_ping(official: OfficialClient, daemon: Daemon, unix_rpc: Rpc) -> None:
    uri = ["-u", daemon.unix_uri]
    assert official.midclt(*uri, "ping").stdout.strip() == "pong"
    assert official.midclt(*uri, "call", "core.ping").stdout.strip() == "pong"
    # A job long enough to report progress: stopping a guest without an OS, which ignores ACPI.
    vm = await unix_rpc.call("vm.create", {"name": unique("offi"), "memory": 64, "autostart": False,
                                           "shutdown_timeout": 5})
    try:
        await unix_rpc.call("vm.start", vm["id"])
        job = official.midclt(*uri, "call", "-j", "vm.stop", str(vm["id"]), '{"force_after_timeout": true}')
        assert job.returncode == 0, job.stderr
        assert "Total Progress" in job.stderr and "Waiting for" in job.stderr, job.stderr
    finally:
        await unix_rpc.call("vm.delete", vm["id"], {"force": True})
    failed = official.midclt(*uri, "call", "vm.start", "999999")
    assert failed.returncode == 1 and "[ENOENT] VM 999999 does not exist" in failed.stderr
    with subprocess.Popen([str(official.venv / "bin" / "midclt"), *uri, "subscribe", "core.get_jobs", "-n", "1",
                           "-t", "60"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as sub:
        output = ""
        for _ in range(40):  # until the subscription is in place, a job event reaches it
            official.midclt(*uri, "call", "core.bulk", "core.ping", "[[]]")
            try:
                output, _ = sub.communicate(timeout=1)
                break
            except subprocess.TimeoutExpired:
                continue
        assert sub.returncode == 0 and '"collection": "core.get_jobs"' in output


async def test_midclt_api_key_over_wss(official: OfficialClient, tls_daemon: Daemon) -> None:
    creds = await account(tls_daemon, ["VM_READ"])
    uri = ["-u", f"wss://127.0.0.1:{tls_daemon.port}/api/current", "--insecure"]
    done = official.midclt(*uri, "-U", creds["user"], "-K", creds["key"], "call", "auth.me")
    assert done.returncode == 0 and f'"pw_name": "{creds["user"]}"' in done.stdout, done.stdout + done.stderr


LEGACY = """
with Client(ARGS["uri"]) as c:
    out = {"class": type(c).__name__, "ping": c.ping()}
    c.login_with_password(ARGS["user"], ARGS["password"])
    out["me"] = c.call("auth.me")["pw_name"]
    out["job"] = c.call("core.bulk", "core.ping", [[]], job=True)
    try:
        c.call("vm.get_instance", 999999)
    except ClientException as e:
        out["missing"] = [e.errno, e.error]
    try:
        c.call("core.subscribe", 5)
    except ValidationErrors as e:
        out["validation"] = [list(x) for x in e.errors]
print(json.dumps(out))
"""


async def test_legacy_websocket_protocol(official: OfficialClient, auth_daemon: Daemon) -> None:
    """A /websocket URI makes the client speak the legacy protocol of older TrueNAS."""
    creds = await account(auth_daemon, ["VM_READ"])
    got = official.run(LEGACY, {"uri": auth_daemon.url.replace("/api/current", "/websocket"), **creds})
    assert got["class"] == "LegacyClient" and got["ping"] is True and got["me"] == creds["user"]
    assert got["job"] == [{"job_id": None, "result": "pong", "error": None}]
    assert got["missing"] == [errno.ENOENT, "[ENOENT] VM 999999 does not exist"]
    assert got["validation"][0][0] == "name"


BINDING = """
import ssl
from truenas_api_client.scram_impl import compute_tls_server_end_point
out = {}
for name, path in ARGS.items():
    try:
        out[name] = bytes(compute_tls_server_end_point(ssl.PEM_cert_to_DER_cert(open(path).read()))).hex()
    except ValueError:
        out[name] = None
print(json.dumps(out))
"""

# openssl req options for certificates signed in each way a server certificate commonly is.
CERTIFICATES = {
    "rsa-sha256": ["-newkey", "rsa:2048", "-sha256"],
    "rsa-sha512": ["-newkey", "rsa:2048", "-sha512"],
    "rsa-sha1": ["-newkey", "rsa:2048", "-sha1"],  # RFC 5929 4.1: SHA-1 is promoted to SHA-256
    "ecdsa-p384-sha384": ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-384", "-sha384"],
    "rsa-pss-sha384": ["-newkey", "rsa-pss", "-pkeyopt", "rsa_keygen_bits:2048", "-sigopt",
                       "rsa_padding_mode:pss", "-sha384"],
    "ed25519": ["-newkey", "ed25519"],  # no hash of its own: no binding is defined
}


def test_channel_binding_matches_the_clients(official: OfficialClient, tmp_path: Path) -> None:
    """The server's tls-server-end-point equals what the client computes, for each kind of certificate."""
    from middlewared.plugins.auth import scram
    paths = {}
    for name, options in CERTIFICATES.items():
        paths[name] = str(tmp_path / f"{name}.pem")
        subprocess.run(["openssl", "req", "-x509", *options, "-nodes", "-days", "2", "-subj", "/CN=localhost",
                        "-keyout", str(tmp_path / f"{name}.key"), "-out", paths[name]], check=True, capture_output=True)
    expected = official.run(BINDING, paths)
    ours = {}
    for name, path in paths.items():
        try:
            ours[name] = scram.tls_server_end_point(path).hex()
        except scram.ScramError:
            ours[name] = None
    assert ours == expected and expected["ed25519"] is None and all(v for k, v in expected.items() if k != "ed25519")
