"""The raw baseline: a minimal aiohttp JSON-RPC server answering every request with "pong" (and a PUT /sink
that reads a body and drops it, the floor for uploads).

As lean as a real JSON-RPC server can be: it decodes each request and encodes each answer with the fastest
JSON library there is (orjson, as the daemon does; the standard library would make the baseline, not the
daemon, look slow), and does nothing else. Run as its own process (`python -m bench.echo --port P --unix
PATH`); it imports nothing but aiohttp and orjson so that its start-up time is the floor for any aiohttp server.
"""
from __future__ import annotations

import argparse
import asyncio
import signal

import orjson

from aiohttp import WSMsgType, web

MAX_MESSAGE = 65536  # the daemon's limit for authenticated connections


async def websocket(request: web.Request) -> web.WebSocketResponse:
    """Parse each message and answer it at once, in order, on the same connection."""
    ws = web.WebSocketResponse(max_msg_size=MAX_MESSAGE, heartbeat=None)
    await ws.prepare(request)
    async for msg in ws:
        if msg.type != WSMsgType.TEXT:
            break
        request_ = orjson.loads(msg.data)
        await ws.send_str(orjson.dumps({"jsonrpc": "2.0", "id": request_.get("id"), "result": "pong"}).decode())
    return ws


async def sink(request: web.Request) -> web.Response:
    """Read a body and throw it away: the floor of an HTTP upload on this machine (no disk)."""
    size = 0
    async for data, _ in request.content.iter_chunks():
        size += len(data)
    return web.json_response({"size": size})


async def serve(port: int, unix: str | None) -> None:
    """Listen on 127.0.0.1:port (and the unix socket) until SIGTERM or SIGINT."""
    app = web.Application()
    app.router.add_get("/api/current", websocket)
    app.router.add_put("/sink", sink)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_address=True).start()
    if unix:
        await web.UnixSite(runner, unix).start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    await runner.cleanup()


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.echo", description=__doc__)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--unix", help="also listen on this unix socket")
    args = parser.parse_args()
    asyncio.run(serve(args.port, args.unix))


if __name__ == "__main__":
    main()
