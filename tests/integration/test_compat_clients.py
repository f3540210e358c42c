"""The legacy /websocket protocol at the message level: what the official client cannot show (a refused
handshake, DDP ping), beside its LegacyClient in test_official_client.py."""
from __future__ import annotations

import aiohttp

from tests.support import Daemon, Rpc


async def legacy(session: aiohttp.ClientSession) -> aiohttp.ClientWebSocketResponse:
    ws = await session.ws_connect("ws://localhost/websocket")
    await ws.send_json({"msg": "connect", "version": "1", "support": ["1"]})
    reply = await ws.receive_json(timeout=5)
    assert reply["msg"] == "connected" and reply["session"]
    return ws


async def test_legacy_protocol(daemon: Daemon) -> None:
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=daemon.socket)) as s:
        ws = await s.ws_connect("ws://localhost/websocket")
        await ws.send_json({"msg": "method", "id": "x", "method": "core.ping"})
        assert (await ws.receive_json(timeout=5)) == {"msg": "failed", "version": "1"}
        ws = await legacy(s)
        await ws.send_json({"msg": "method", "id": "1", "method": "core.ping", "params": []})
        assert await ws.receive_json(timeout=5) == {"msg": "result", "id": "1", "result": "pong"}
        await ws.send_json({"msg": "method", "id": "2", "method": "core.subscribe", "params": [5]})
        error = (await ws.receive_json(timeout=5))["error"]
        assert error["error"] == 11 and error["type"] == "VALIDATION" and error["extra"][0][0] == "name"
        await ws.send_json({"msg": "sub", "id": "s1", "name": "core.get_jobs"})
        assert await ws.receive_json(timeout=5) == {"msg": "ready", "subs": ["s1"]}
        await ws.send_json({"msg": "method", "id": "3", "method": "core.bulk", "params": ["core.ping", [[]]]})
        seen = []
        while True:
            m = await ws.receive_json(timeout=10)
            seen.append(m)
            if m.get("msg") == "changed" and m["fields"]["state"] == "SUCCESS":
                break
        result = next(m for m in seen if m.get("msg") == "result")
        assert isinstance(result["result"], int)  # job methods answer with their id
        assert any(m.get("msg") == "added" and m["collection"] == "core.get_jobs" for m in seen)
        await ws.send_json({"msg": "method", "id": "4", "method": "no.such"})
        assert (await ws.receive_json(timeout=5))["error"]["errname"] == "ENOMETHOD"
        await ws.send_str('{"msg": "method", "id": "5", "method": "vm.query", "params": [' + "[" * 1000
                          + "]" * 1000 + "]}")
        error = (await ws.receive_json(timeout=5))["error"]
        assert error["type"] == "VALIDATION" and error["extra"][0][0] == "params"
        await ws.send_json({"msg": "ping", "id": "p"})
        assert await ws.receive_json(timeout=5) == {"msg": "pong", "id": "p"}
