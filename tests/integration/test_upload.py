"""POST /_upload into filesystem.put against the real daemon: tokens, roles, roots, truncation, abort."""
from __future__ import annotations

import asyncio
import json
import os
import socket
from pathlib import Path
from typing import Any

import aiohttp

from tests.support import Daemon, Rpc, unique


def form(method: str, params: list[Any], content: bytes) -> aiohttp.FormData:
    data = aiohttp.FormData()
    data.add_field("data", json.dumps({"method": method, "params": params}), content_type="application/json")
    data.add_field("file", content, filename="upload.bin", content_type="application/octet-stream")
    return data


async def post(daemon: Daemon, token: str, data: Any, **kw: Any) -> tuple[int, dict[str, Any]]:
    async with aiohttp.ClientSession() as s:
        async with s.post(f"http://127.0.0.1:{daemon.port}/_upload", params={"auth_token": token},
                          data=data, **kw) as r:
            return r.status, await r.json()


async def token(rpc: Rpc) -> str:
    return str(await rpc.call("auth.generate_token", 300, {}, False, False))


async def test_upload_writes_the_file_and_reports_a_job(daemon: Daemon, unix_rpc: Rpc) -> None:
    target = daemon.storage / f"{unique('iso')}.iso"
    payload = os.urandom(3 * 2**20 + 17)
    status, body = await post(daemon, await token(unix_rpc), form("filesystem.put", [str(target)], payload))
    assert status == 200, body
    assert target.read_bytes() == payload
    job = (await unix_rpc.call("core.get_jobs", [["id", "=", body["job_id"]]]))[0]
    assert job["method"] == "filesystem.put" and job["state"] == "SUCCESS" and job["result"] == len(payload)
    entries = await unix_rpc.call("filesystem.listdir", str(daemon.storage), [["name", "=", target.name]])
    assert entries[0]["type"] == "FILE" and entries[0]["size"] == len(payload)
    # A second upload to the same name is refused before any byte is written, next to its field.
    status, body = await post(daemon, await token(unix_rpc), form("filesystem.put", [str(target)], b"x"))
    assert status == 422 and body["error"]["data"]["extra"][0][0] == "path"
    assert target.read_bytes() == payload


async def test_refusals(daemon: Daemon, unix_rpc: Rpc) -> None:
    target = str(daemon.storage / unique("f"))
    assert (await post(daemon, "bogus", form("filesystem.put", [target], b"x")))[0] == 401
    status, body = await post(daemon, await token(unix_rpc), form("filesystem.put", ["/etc/evil"], b"x"))
    assert status == 422 and "storage roots" in body["error"]["data"]["extra"][0][1]
    status, body = await post(daemon, await token(unix_rpc), form("vm.query", [], b"x"))
    assert status == 404
    status, body = await post(daemon, await token(unix_rpc), b"raw", headers={"Content-Type": "text/plain"})
    assert status == 400
    # Chunked transfer (no Content-Length) is refused.
    async def gen() -> Any:
        yield b"x"
    status, body = await post(daemon, await token(unix_rpc), gen())
    assert status == 411
    err = await unix_rpc.request("filesystem.put", target, {})
    assert "/_upload" in err["error"]["data"]["reason"]
    assert not os.path.exists(target)


async def test_a_body_cut_short_leaves_nothing(daemon: Daemon, unix_rpc: Rpc) -> None:
    name = unique("cut")
    tok = await token(unix_rpc)
    boundary = "BOUNDARY42"
    head = (f"--{boundary}\r\nContent-Disposition: form-data; name=\"data\"\r\n\r\n"
            + json.dumps({"method": "filesystem.put", "params": [str(daemon.storage / name)]})
            + f"\r\n--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"a\"\r\n\r\n").encode()
    sent = head + b"y" * 100_000
    request = (f"POST /_upload?auth_token={tok} HTTP/1.1\r\nHost: x\r\n"
               f"Content-Type: multipart/form-data; boundary={boundary}\r\n"
               f"Content-Length: {len(sent) + 500_000}\r\n\r\n").encode() + sent
    with socket.create_connection(("127.0.0.1", daemon.port)) as s:
        s.sendall(request)
        await asyncio.sleep(0.5)
    for _ in range(50):
        jobs = await unix_rpc.call("core.get_jobs", [["method", "=", "filesystem.put"],
                                                     ["arguments.0", "$", name]])
        if jobs and jobs[-1]["state"] in ("FAILED", "ABORTED"):
            break
        await asyncio.sleep(0.1)
    assert jobs and jobs[-1]["state"] == "FAILED", jobs
    assert not [p for p in Path(daemon.storage).iterdir() if name in p.name or p.name.startswith(".upload")]
    cut, = await unix_rpc.call("audit.query", [["method", "=", "filesystem.put"],
                                               ["params.0", "=", str(daemon.storage / name)]])
    assert cut["success"] is False and cut["error"].startswith("HTTP 422: ")


async def test_abort_through_the_job(daemon: Daemon, unix_rpc: Rpc) -> None:
    target = daemon.storage / unique("slow")

    async def slow() -> Any:
        for _ in range(200):
            yield b"z" * 65536
            await asyncio.sleep(0.02)
    data = aiohttp.FormData()
    data.add_field("data", json.dumps({"method": "filesystem.put", "params": [str(target)]}))
    data.add_field("file", slow(), filename="s")
    tok = await token(unix_rpc)

    async def abort_when_running() -> None:
        for _ in range(100):
            jobs = await unix_rpc.call("core.get_jobs", [["method", "=", "filesystem.put"], ["state", "=", "RUNNING"]])
            if jobs:
                await unix_rpc.call("core.job_abort", jobs[0]["id"])
                return
            await asyncio.sleep(0.05)
    aborter = asyncio.ensure_future(abort_when_running())
    try:
        status, body = await post(daemon, tok, data, headers={"Content-Length": str(200 * 65536 + 1000)})
    except aiohttp.ClientError:
        status, body = 0, {}
    await aborter
    assert status in (0, 409), body
    assert not target.exists()
    assert not [p for p in Path(daemon.storage).iterdir() if p.name.startswith(".upload")]


async def test_uploads_are_audited_as_calls_of_their_method(daemon: Daemon, unix_rpc: Rpc) -> None:
    """filesystem.put is audited over JSON-RPC; through /_upload too: the token's user, the peer, the path,
    the outcome, and never the token."""
    target = str(daemon.storage / f"{unique('audited')}.iso")
    tok = await token(unix_rpc)
    assert (await post(daemon, tok, form("filesystem.put", [target, {"mode": 0o600}], b"abc")))[0] == 200
    refused_tok = await token(unix_rpc)
    outside = f"/etc/{unique('evil')}"
    assert (await post(daemon, refused_tok, form("filesystem.put", [outside], b"x")))[0] == 422
    bad = unique("not-a-token")
    assert (await post(daemon, bad, form("filesystem.put", [target + ".2"], b"x")))[0] == 401
    done, = await unix_rpc.call("audit.query", [["method", "=", "filesystem.put"], ["params.0", "=", target]])
    assert (done["event"], done["service"], done["username"], done["success"], done["error"]) == \
        ("METHOD_CALL", "MIDDLEWARE", "root", True, None)
    assert done["params"] == [target, {"mode": 0o600}] and done["origin"].startswith("TCP:127.0.0.1:")
    refused, = await unix_rpc.call("audit.query", [["method", "=", "filesystem.put"], ["params.0", "=", outside]])
    assert refused["username"] == "root" and refused["success"] is False
    assert refused["error"].startswith("HTTP 422: ") and "storage roots" in refused["error"]
    failed = (await unix_rpc.call("audit.query", [["event", "=", "AUTHENTICATION"], ["method", "=", "TOKEN_PLAIN"],
                                                  ["origin", "^", "TCP:"]]))[-1]
    assert (failed["username"], failed["success"], failed["error"]) == \
        (None, False, "HTTP 401: A valid auth_token is required")
    everything = json.dumps(await unix_rpc.call("audit.query"))
    assert tok not in everything and refused_tok not in everything and bad not in everything
