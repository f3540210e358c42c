"""bench rpc, in process: what the daemon itself spends on one core.ping (decoding, checks, dispatch, the
answer) with the sockets taken away, beside a raw handler that only decodes and encodes (orjson).

Busy hosts skew calls/s; this figure is CPU time of one process, best of several runs, so it moves little.
"""
from __future__ import annotations

import dataclasses
import time
from typing import Any

import orjson

from bench.common import Table, fmt
from middlewared import credentials
from middlewared.api.rpc import RpcConnection
from middlewared.config import Config
from middlewared.middleware import Middleware
from middlewared.plugins import PLUGINS
from middlewared.plugins.auth.scope import ScopePolicy

CALLS = 20000
RUNS = 7


class _Socket:
    """Takes the answers, as a WebSocket would, without sending them anywhere."""

    async def send_str(self, text: str) -> None:
        pass


def _best(run: Any) -> float:
    """CPU microseconds per call, best of RUNS."""
    best = float("inf")
    for _ in range(RUNS):
        t0 = time.process_time()
        run()
        best = min(best, time.process_time() - t0)
    return best / CALLS * 1e6


def _measure() -> dict[str, float]:
    """Calls run to the end in their first step here (nothing waits): no event loop is needed."""
    config = Config()
    # Anonymous calls go through the rate limiter, as on TCP; the limit itself is lifted.
    config = dataclasses.replace(config, auth=dataclasses.replace(config.auth, rate_limit_calls=10**9))
    middleware = Middleware(config, PLUGINS)
    middleware.policy = ScopePolicy(middleware)
    messages = [orjson.dumps({"jsonrpc": "2.0", "id": i, "method": "core.ping", "params": []}).decode()
                for i in range(CALLS)]
    socket = _Socket()
    out = {}
    for label, who in (("root (unix socket)", credentials.root()), ("anonymous (TCP)", credentials.ANONYMOUS)):
        conn = RpcConnection(middleware, socket, who, "bench", "127.0.0.1")  # type: ignore[arg-type]

        def daemon(conn: RpcConnection = conn) -> None:
            for text in messages:
                conn.on_message(text)
        out[label] = _best(daemon)

    async def raw_calls() -> None:
        for text in messages:
            request = orjson.loads(text)
            await socket.send_str(orjson.dumps({"jsonrpc": "2.0", "id": request.get("id"),
                                                "result": "pong"}).decode())

    def raw() -> None:
        # Driven the way the daemon drives a call: nothing here waits, so one step runs it all.
        try:
            raw_calls().send(None)
        except StopIteration:
            pass
    out["raw"] = _best(raw)
    return out


def dispatch_table() -> Table:
    """The per-call CPU of the daemon's dispatch beside the raw handler's."""
    measured = _measure()
    raw = measured.pop("raw")
    table = Table("Dispatch of one core.ping in process, no sockets (CPU us per call, best of "
                  f"{RUNS} runs of {CALLS:,})", ["caller", "daemon", "raw", "difference"])
    for label, value in measured.items():
        table.add(label, fmt(value, 2), fmt(raw, 2), fmt(value - raw, 2))
    table.note("raw: orjson decode and encode only; the difference is what the daemon adds to every call "
               "(checks, dispatch, limits, statistics, audit).")
    return table
