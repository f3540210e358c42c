"""The JSON-RPC wire protocol over real WebSockets, on the unix socket (root) and TCP (anonymous)."""
from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import socket
import struct

import aiohttp
import pytest

from tests.support import Daemon, Rpc, RpcError


async def test_ping_unix_and_tcp(unix_rpc: Rpc, tcp_rpc: Rpc) -> None:
    assert await unix_rpc.call("core.ping") == "pong"
    assert await tcp_rpc.call("core.ping") == "pong"


async def test_parse_error(unix_rpc: Rpc) -> None:
    await unix_rpc.send("{not json")
    reply = await unix_rpc.receive()
    assert reply["id"] is None and reply["error"]["code"] == -32700


async def test_batch_refused(unix_rpc: Rpc) -> None:
    await unix_rpc.send([{"jsonrpc": "2.0", "id": 1, "method": "core.ping"}])
    reply = await unix_rpc.receive()
    assert reply["error"]["code"] == -32600
    assert "Batch messages are not supported" in reply["error"]["message"]


@pytest.mark.parametrize("request_", [
    {"jsonrpc": "1.0", "id": 7, "method": "core.ping"},
    {"jsonrpc": "2.0", "id": 7, "method": ""},
    {"jsonrpc": "2.0", "id": 7, "method": "core.ping", "params": {"a": 1}},
    {"jsonrpc": "2.0", "id": 7, "method": 5},
])
async def test_invalid_request(unix_rpc: Rpc, request_: dict[str, object]) -> None:
    await unix_rpc.send(request_)
    reply = await unix_rpc.receive()
    assert reply["id"] == 7 and reply["error"]["code"] == -32600


async def test_invalid_request_without_id_gets_no_answer(unix_rpc: Rpc) -> None:
    await unix_rpc.send({"jsonrpc": "2.0", "method": "core.ping", "params": "x"})
    assert await unix_rpc.call("core.ping") == "pong"
    assert unix_rpc.events == []


async def test_unknown_method(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("no.such_method")
    assert e.value.code == -32601 and e.value.error["message"] == "Method does not exist"


async def test_validation_error_shape(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.set_options", {"legacy_jobs": "yes", "bogus": 1})
    err = e.value
    assert err.code == -32602 and err.errno == 22 and err.data["errname"] == "EINVAL"
    attrs = {a for a, _, _ in err.extra}
    assert attrs == {"options.legacy_jobs", "options.bogus"}
    assert all(code == 22 for _, _, code in err.extra)
    assert "[EINVAL] options.legacy_jobs: Input should be a valid boolean" in err.reason


async def test_too_many_arguments(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.ping", 1, 2)
    assert e.value.code == -32602
    assert "Too many arguments (expected 0, found 2)" in e.value.reason


async def test_missing_required_argument(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.subscribe")
    assert e.value.extra == [["name", "Field required", 22]]


async def test_notification_runs_and_answers_nothing(unix_rpc: Rpc) -> None:
    await unix_rpc.send({"jsonrpc": "2.0", "method": "core.set_options", "params": [{"legacy_jobs": False}]})
    # With new-style jobs the response is the job's result, not its id: the notification ran.
    result = await unix_rpc.call("core.bulk", "core.ping", [[], []])
    assert result == [{"job_id": None, "result": "pong", "error": None}] * 2
    assert not [m for m in unix_rpc.events if "id" in m and "method" not in m]


async def test_tcp_is_anonymous(tcp_rpc: Rpc) -> None:
    assert (await tcp_rpc.call("core.set_options", {"legacy_jobs": False}))["legacy_jobs"] is False
    with pytest.raises(RpcError) as e:
        await tcp_rpc.call("core.get_methods")
    assert e.value.code == -32001 and e.value.errno == 207 and e.value.data["errname"] == "ENOTAUTHENTICATED"
    assert e.value.reason == "[ENOTAUTHENTICATED] Not authenticated"


async def test_anonymous_message_limit(daemon: Daemon) -> None:
    async with aiohttp.ClientSession() as s:
        ws = await s.ws_connect(daemon.url)
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 1, "method": "core.ping", "params": ["x" * 9000]}))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1007
        assert "8 kB" in msg.extra


async def test_authenticated_message_limit(daemon: Daemon) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.socket)) as s:
        ws = await s.ws_connect("ws://localhost/api/current")
        rpc = Rpc(ws)
        # 20 KB is fine once authenticated (a validation error, not a closed socket)...
        with pytest.raises(RpcError):
            await rpc.call("core.ping", "x" * 20000)
        # ...70 KB is not.
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": 2, "method": "core.ping", "params": ["x" * 70000]}))
        msg = await ws.receive(timeout=5)
        assert msg.type == aiohttp.WSMsgType.CLOSE and msg.data == 1009


def _frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    header = bytes([0x81])
    n = len(payload)
    if n < 126:
        header += bytes([0x80 | n])
    else:
        header += bytes([0x80 | 126]) + struct.pack("!H", n)
    return header + mask + bytes(b ^ mask[i % 4] for i, b in enumerate(payload))


def _read_frames(sock: socket.socket, count: int) -> list[dict[str, object]]:
    buf, out = b"", []
    while len(out) < count:
        chunk = sock.recv(65536)
        assert chunk, "connection closed"
        buf += chunk
        while len(buf) >= 2:
            n, offset = buf[1] & 0x7F, 2
            if n == 126:
                if len(buf) < 4:
                    break
                n, offset = struct.unpack("!H", buf[2:4])[0], 4
            elif n == 127:
                if len(buf) < 10:
                    break
                n, offset = struct.unpack("!Q", buf[2:10])[0], 10
            if len(buf) < offset + n:
                break
            out.append(json.loads(buf[offset:offset + n]))
            buf = buf[offset + n:]
    return out


async def test_calls_in_flight_are_limited(daemon: Daemon, unix_rpc: Rpc, vm: dict[str, object]) -> None:
    """30 calls that really wait (core.job_wait on a stop that waits for ACPI), in one write: 20 run,
    the rest are refused with -32000."""
    await unix_rpc.call("vm.start", vm["id"])
    stop_job = await unix_rpc.call("vm.stop", vm["id"], {"force_after_timeout": True})
    sock = socket.socket(socket.AF_UNIX)
    sock.connect(daemon.socket)
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall(f"GET /api/current HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                 f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n".encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head
    frames = [_frame(json.dumps({"jsonrpc": "2.0", "id": "opts", "method": "core.set_options",
                                 "params": [{"legacy_jobs": False}]}))]
    frames += [_frame(json.dumps({"jsonrpc": "2.0", "id": i, "method": "core.job_wait", "params": [stop_job]}))
               for i in range(30)]
    sock.sendall(b"".join(frames))
    replies = await asyncio.to_thread(_read_frames, sock, 31)
    sock.close()
    replies = [r for r in replies if r["id"] != "opts"]
    refused = [r for r in replies if "error" in r]
    assert len(refused) == 10
    assert all(r["error"]["code"] == -32000 for r in refused)  # type: ignore[index]
    assert "Maximum number of concurrent calls (20) has exceeded" in refused[0]["error"]["message"]  # type: ignore[index]
    assert sorted(r["id"] for r in replies) == list(range(30))  # type: ignore[type-var]


async def test_instant_calls_pipeline_beyond_the_limit(unix_rpc: Rpc) -> None:
    """Calls that answer at once never pile up: 64 pipelined pings all succeed."""
    for i in range(64):
        await unix_rpc.send({"jsonrpc": "2.0", "id": i, "method": "core.ping"})
    replies = [await unix_rpc.receive() for _ in range(64)]
    assert all(r.get("result") == "pong" for r in replies)


async def test_get_methods_describes_every_method(unix_rpc: Rpc) -> None:
    methods = await unix_rpc.call("core.get_methods")
    ping = methods["core.ping"]
    assert ping["authentication_required"] is False and ping["job"] is False
    assert methods["core.bulk"]["job"] is True
    for name, m in methods.items():
        assert m["description"], name
        assert isinstance(m["params"], list) and "result" in m, name
        assert m["roles"] or not m["authentication_required"], name


async def test_subscribe_unknown_event(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.subscribe", "nope.query")
    assert e.value.code == -32602 and e.value.extra[0][2] == 2


async def test_unsubscribe_stops_events(unix_rpc: Rpc) -> None:
    ident = await unix_rpc.call("core.subscribe", "core.get_jobs")
    await unix_rpc.call("core.bulk", "core.ping", [[]])
    await unix_rpc.next_event(lambda e: e.get("method") == "collection_update")
    await unix_rpc.call("core.unsubscribe", ident)
    unix_rpc.events.clear()
    job_id = await unix_rpc.call("core.bulk", "core.ping", [[]])
    await asyncio.sleep(0.3)
    assert not [e for e in unix_rpc.events if e.get("params", {}).get("id") == job_id]


@pytest.mark.parametrize("ident", [2**64, 10**30, -(2**63) - 1, 18446744073709551615, 1.5, 0.1, -2.25e-7])
async def test_ids_come_back_exactly(unix_rpc: Rpc, ident: int | float) -> None:
    """JSON-RPC answers with the request's id, whatever its size (fractional ids are numbers too)."""
    for method, member in (("core.ping", "result"), ("no.such_method", "error")):
        await unix_rpc.send(f'{{"jsonrpc": "2.0", "id": {json.dumps(ident)}, "method": "{method}"}}')
        reply = json.loads(await unix_rpc.ws.receive_str(timeout=5))
        assert reply["id"] == ident and type(reply["id"]) is type(ident) and member in reply


async def test_deeply_nested_params_are_refused_cleanly(unix_rpc: Rpc, daemon: Daemon) -> None:
    """A clean validation error, and nothing in the log: one client must not flood it."""
    logged = len(daemon.log())
    for deep in ("[" * 1000 + "]" * 1000, '{"a":' * 1000 + "1" + "}" * 1000, "[" * 66 + "]" * 66):
        await unix_rpc.send(f'{{"jsonrpc": "2.0", "id": 1, "method": "vm.query", "params": [{deep}]}}')
        error = (await unix_rpc.receive())["error"]
        assert error["code"] == -32602 and error["data"]["extra"][0][0] == "params", error
    assert await unix_rpc.call("vm.query", [["OR", [[["id", "=", 1]], [["name", "=", "x"]]]]]) == []
    new_lines = daemon.log()[logged:]
    assert "Traceback" not in new_lines and "ERROR" not in new_lines, new_lines


@pytest.mark.parametrize("family", [socket.AF_UNIX, socket.AF_INET])
def test_many_clients_connect_at_the_same_instant(daemon: Daemon, family: socket.AddressFamily) -> None:
    """200 connections opened at once are all accepted and answered (unix socket and TCP)."""
    clients = []
    address = daemon.socket if family == socket.AF_UNIX else ("127.0.0.1", daemon.port)
    try:
        for _ in range(200):  # faster than the daemon accepts: the listen backlog must hold them
            s = socket.socket(family, socket.SOCK_STREAM)
            s.setblocking(False)
            clients.append(s)
            assert s.connect_ex(address) in (0, errno.EINPROGRESS)
        for s in clients:
            s.setblocking(True)
            s.settimeout(30)
            s.sendall(b"GET /api/versions HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n")
        for s in clients:
            assert s.recv(64).startswith(b"HTTP/1.1 200")
    finally:
        for s in clients:
            s.close()
