"""bench rpc: core.ping throughput, idle RSS and start-up time, beside a raw aiohttp JSON-RPC echo server.

The load comes from a separate process (one worker of a spawn-context process pool) running the same client
code against both servers, so the server under test has a CPU of its own to work on.
"""
from __future__ import annotations

import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Callable, NamedTuple

import aiohttp
import psutil

from bench.common import (Endpoint, Table, cleanup_libvirt, first_pong, fmt, free_port, quiet_libvirt, ratio,
                          spawn, spawn_daemon, stop_process)
from bench.dispatch import dispatch_table

STARTUP_RUNS = 5
# Anonymous TCP callers are rate-limited (20 calls per 60 s, as in TrueNAS): the bench lifts the limit (the
# limiter stays on the path) so that TCP measures the transport; a 1 s period keeps the limiter's memory small.
DAEMON_CONFIG = """
[auth]
rate_limit_calls = 1000000000
rate_limit_period = 1
"""
ROUNDS = 3  # each throughput figure is the best of this many rounds, daemon and raw taken in turn
IDLE_SETTLE = 1.0  # seconds between the first answer and the idle RSS reading


@dataclass(frozen=True)
class Load:
    """A load shape: how many connections, each keeping `depth` calls in flight."""

    label: str
    connections: int
    depth: int


LOADS = (
    Load("sequential, 1 conn", 1, 1),
    Load("pipelined x64, 1 conn", 1, 64),
    Load("pipelined x16, 1 conn", 1, 16),
    Load("32 conns, sequential", 32, 1),
)


@dataclass
class LoadResult:
    """What one load run saw: answers in the measuring window, and totals for CPU accounting."""

    ok: int = 0
    errors: int = 0
    total: int = 0
    window: float = 0.0
    client_cpu: float = 0.0
    wall: float = 0.0
    first_error: str | None = None

    @property
    def rate(self) -> float:
        return self.ok / self.window if self.window else 0.0


# -- the load generator (runs in the worker process) ---------------------------------------------
def run_load(endpoint: Endpoint, load: Load, duration: float, warmup: float) -> LoadResult:
    """Drive core.ping calls for warmup + duration seconds; count the answers of the last `duration`."""
    return asyncio.run(_load(endpoint, load, duration, warmup))


async def _load(endpoint: Endpoint, load: Load, duration: float, warmup: float) -> LoadResult:
    cpu0, wall0 = time.process_time(), time.perf_counter()
    result = LoadResult()
    async with endpoint.session() as session:
        sockets = [await session.ws_connect(endpoint.url, max_msg_size=0) for _ in range(load.connections)]
        start = time.perf_counter() + warmup
        end = start + duration
        await asyncio.gather(*(_drive(ws, load.depth, start, end, result) for ws in sockets))
        for ws in sockets:
            await ws.close()
    result.window = duration
    result.client_cpu = time.process_time() - cpu0
    result.wall = time.perf_counter() - wall0
    return result


async def _drive(ws: aiohttp.ClientWebSocketResponse, depth: int, start: float, end: float,
                 result: LoadResult) -> None:
    """Keep `depth` calls in flight on one connection until `end`, then collect the stragglers."""
    next_id = 0

    async def send() -> None:
        nonlocal next_id
        next_id += 1
        await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": next_id, "method": "core.ping", "params": []}))

    for _ in range(depth):
        await send()
    in_flight = depth
    while in_flight:
        msg = await ws.receive()
        if msg.type != aiohttp.WSMsgType.TEXT:
            raise ConnectionError(f"server closed the connection: {msg.type.name} {msg.extra!r}")
        in_flight -= 1
        now = time.perf_counter()
        answer = json.loads(msg.data)
        result.total += 1
        if start <= now < end:
            if "error" in answer:
                result.errors += 1
                error = answer["error"]
                text = f"{error.get('code')} {error.get('message')}"
                reason = (error.get("data") or {}).get("reason")
                result.first_error = result.first_error or (f"{text}: {reason}" if reason not in (None, error.get(
                    "message")) else text)
            else:
                result.ok += 1
        if now < end:
            await send()
            in_flight += 1


# -- the servers -----------------------------------------------------------------------------------
class Launched(NamedTuple):
    """A server process just spawned, where it will listen, and its log."""

    process: subprocess.Popen[bytes]
    tcp: Endpoint
    unix: Endpoint
    log: Path


@dataclass
class Server:
    """A server under test: its process and endpoints, and its start-ups (wall and own CPU seconds)."""

    name: str
    launched: Launched
    startups: list[float]
    startup_cpu: list[float]

    def endpoint(self, transport: str) -> Endpoint:
        return self.launched.tcp if transport == "TCP" else self.launched.unix

    def rss_mib(self) -> float:
        return psutil.Process(self.launched.process.pid).memory_info().rss / 2**20

    def cpu(self) -> float:
        return process_cpu(self.launched.process)


def process_cpu(process: subprocess.Popen[bytes]) -> float:
    """CPU seconds (user + system, all threads) a process has used so far."""
    times = psutil.Process(process.pid).cpu_times()
    return times.user + times.system


def launch_echo(tmp: Path) -> Launched:
    port, sock = free_port(), str(tmp / "echo.sock")
    process = spawn([sys.executable, "-m", "bench.echo", "--port", str(port), "--unix", sock], tmp / "echo.log")
    return Launched(process, Endpoint.tcp(port), Endpoint.unix_socket(sock), tmp / "echo.log")


def launch_daemon(tmp: Path, pool: str) -> Launched:
    daemon = spawn_daemon(tmp, pool, DAEMON_CONFIG)
    return Launched(daemon.process, daemon.tcp, daemon.unix, daemon.log_path)


async def start_server(name: str, launch: Callable[[], Launched], runs: int) -> Server:
    """Start a server `runs` times, timing spawn to the first answered core.ping; leave the last one running."""
    times: list[float] = []
    cpu: list[float] = []
    for i in range(runs):
        t0 = time.perf_counter()
        launched = launch()
        try:
            await first_pong(launched.tcp, launched.process)
        except Exception as e:
            stop_process(launched.process)
            log = launched.log.read_text(errors="replace")[-3000:]
            raise RuntimeError(f"{name} did not start: {e}\n{log}") from None
        times.append(time.perf_counter() - t0)
        cpu.append(process_cpu(launched.process))
        if i < runs - 1:
            stop_process(launched.process)
    return Server(name, launched, times, cpu)


# -- the bench -----------------------------------------------------------------------------------------
async def run(duration: float = 1.5, warmup: float = 0.1, startup_runs: int = STARTUP_RUNS) -> None:
    """Run every rpc figure and print the tables."""
    quiet_libvirt()
    began = time.perf_counter()
    print(f"load average before: {_load_average()} on {os.cpu_count()} CPUs "
          "(other work on the host skews every figure)\n", flush=True)
    pool = f"mwbench{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="mwbench-") as tmp_name:
        tmp = Path(tmp_name)
        (tmp / "daemon").mkdir()
        echo = daemon = None
        try:
            echo = await start_server("raw", lambda: launch_echo(tmp), startup_runs)
            daemon = await start_server("daemon", lambda: launch_daemon(tmp / "daemon", pool), startup_runs)
            await asyncio.sleep(IDLE_SETTLE)
            process_table(daemon, echo).print()
            dispatch_table().print()
            (await throughput_table(daemon, echo, duration, warmup)).print()
            print(f"daemon RSS after the load: {daemon.rss_mib():.1f} MiB")
        finally:
            for server in (daemon, echo):
                if server is not None:
                    stop_process(server.launched.process)
            cleanup_libvirt(pool)
    print(f"load average after: {_load_average()}; bench rpc took {time.perf_counter() - began:.1f} s")


def _load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def process_table(daemon: Server, echo: Server) -> Table:
    table = Table("Process (daemon vs raw aiohttp echo server)",
                  ["figure", "daemon", "raw", "ratio", "target", "note"])
    table.add("idle RSS, MiB", fmt(daemon.rss_mib()), fmt(echo.rss_mib()), ratio(daemon.rss_mib(), echo.rss_mib()),
              "<= 80 MiB", f"{IDLE_SETTLE:g} s after the first answer")
    d, e = daemon.startups, echo.startups
    table.add("start-up to first core.ping, s", fmt(statistics.median(d), 3), fmt(statistics.median(e), 3),
              ratio(statistics.median(d), statistics.median(e)), "<= 1.5 s",
              f"median of {len(d)}; daemon min {min(d):.3f} max {max(d):.3f}")
    dc, ec = statistics.median(daemon.startup_cpu), statistics.median(echo.startup_cpu)
    table.add("  its own CPU time, s", fmt(dc, 3), fmt(ec, 3), ratio(dc, ec), "",
              "user+sys up to the first answer (children such as the KVM probe not counted)")
    return table


@dataclass
class Measured:
    """One server under one load over all rounds: the best round, and CPU per answer over all of them."""

    best: LoadResult | None = None
    cpu: float = 0.0
    answers: int = 0

    def add(self, result: LoadResult, cpu: float) -> None:
        if self.best is None or result.rate > self.best.rate:
            self.best = result
        self.cpu += cpu
        self.answers += result.total

    @property
    def rate(self) -> float:
        return self.best.rate if self.best else 0.0

    @property
    def cpu_us(self) -> float:
        return self.cpu / max(self.answers, 1) * 1e6


async def throughput_table(daemon: Server, echo: Server, duration: float, warmup: float) -> Table:
    window = duration / ROUNDS
    table = Table(f"core.ping calls/s: client in its own process, best of {ROUNDS} rounds of {window:g} s "
                  f"(after {warmup:g} s warm-up) taken in turn from each server",
                  ["transport / load", "daemon", "raw", "ratio", "target",
                   "daemon CPU us/call", "raw CPU us/call", "CPU ratio", "note"])
    loop = asyncio.get_running_loop()
    errors: set[str] = set()
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as workers:
        for transport in ("TCP", "unix"):
            for load in LOADS:
                measured = {daemon.name: Measured(), echo.name: Measured()}
                for _ in range(ROUNDS):
                    for server in (daemon, echo):
                        cpu0 = server.cpu()
                        res = await loop.run_in_executor(workers, run_load, server.endpoint(transport), load,
                                                         window, warmup)
                        measured[server.name].add(res, server.cpu() - cpu0)
                        errors.update([res.first_error] if res.first_error else [])
                d, r = measured[daemon.name], measured[echo.name]
                table.add(f"{transport} {load.label}", fmt(d.rate, 0), fmt(r.rate, 0), ratio(d.rate, r.rate),
                          ">= 0.9", fmt(d.cpu_us), fmt(r.cpu_us), ratio(r.cpu_us, d.cpu_us), _note(d, r))
    for error in sorted(errors):
        table.note(f"error answer: {error}")
    table.note("TCP: anonymous calls (the bench's daemon config lifts the rate limit); unix: root, authenticated "
               "by SO_PEERCRED.")
    table.note("x16 stays under the daemon's limit of calls in flight per connection (20, as in TrueNAS); x64 goes "
               "past it: the refused calls are answered with an error and not counted.")
    table.note("CPU us/call: server process CPU time (user+sys) per answer over all rounds; CPU ratio = raw/daemon "
               "(1.0: as cheap as raw), which other load on the host disturbs much less than calls/s.")
    table.note("client CPU: the load process's busy share in the best round (near 100%: the client set the pace).")
    return table


def _note(daemon: Measured, raw: Measured) -> str:
    assert daemon.best is not None and raw.best is not None
    d, r = daemon.best, raw.best
    parts = [f"client CPU {d.client_cpu / d.wall:.0%}/{r.client_cpu / r.wall:.0%}"]
    if d.errors:
        parts.append(f"daemon errors {d.errors / d.window:,.0f}/s")
    if r.errors:
        parts.append(f"raw errors {r.errors / r.window:,.0f}/s")
    return "; ".join(parts)
