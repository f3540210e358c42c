"""Shared bench pieces: endpoints, a tiny JSON-RPC client, spawning the daemon, statistics, the table."""
from __future__ import annotations

import asyncio
import json
import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Sequence

import aiohttp

from tests.support import ROOT, cleanup_libvirt, free_port, write_config

IN_FLIGHT = 16           # concurrent vm.create / vm.delete calls (the daemon allows 20 per connection)
MAX_ERRORS = 5           # a bulk phase gives up after this many failed calls
CALL_TIMEOUT = 60.0      # seconds one vm.create / vm.delete may take before it counts as failed

# Re-exported from the test support: the benches start the daemon the way the integration tests do.
__all__ = ["ROOT", "cleanup_libvirt", "free_port", "quiet_libvirt", "Endpoint", "RpcClient", "RpcError", "Daemon",
           "spawn_daemon", "spawn", "stop_process", "first_pong", "percentile", "Table", "fmt", "ratio"]


@dataclass(frozen=True)
class Endpoint:
    """Where a JSON-RPC WebSocket server listens: a TCP URL, or a unix socket path (picklable)."""

    url: str
    unix: str | None = None

    @classmethod
    def tcp(cls, port: int) -> "Endpoint":
        return cls(f"ws://127.0.0.1:{port}/api/current")

    @classmethod
    def unix_socket(cls, path: str) -> "Endpoint":
        return cls("ws://localhost/api/current", path)

    def session(self) -> aiohttp.ClientSession:
        """A client session that reaches this endpoint (no connection limit: the loads open many)."""
        if self.unix is not None:
            return aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=self.unix, limit=0))
        return aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))

    @property
    def label(self) -> str:
        return "unix" if self.unix is not None else "TCP"


class RpcError(Exception):
    """An error response: its JSON-RPC code and data."""

    def __init__(self, error: dict[str, Any]) -> None:
        data = error.get("data") or {}
        super().__init__(data.get("reason") or error.get("message") or json.dumps(error)[:500])
        self.code: int = error.get("code", 0)
        self.data: dict[str, Any] = data


class RpcClient:
    """JSON-RPC 2.0 over one WebSocket: calls matched to answers by id, notifications queued with arrival time."""

    def __init__(self, session: aiohttp.ClientSession, ws: aiohttp.ClientWebSocketResponse) -> None:
        self._session = session
        self._ws = ws
        self._next_id = 0
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self.events: asyncio.Queue[tuple[float, dict[str, Any]]] = asyncio.Queue()
        self._reader = asyncio.create_task(self._read())

    @classmethod
    async def open(cls, endpoint: Endpoint) -> "RpcClient":
        session = endpoint.session()
        try:
            # Answers (vm.query of 1,000 VMs) may be large: no inbound limit on our side.
            ws = await session.ws_connect(endpoint.url, max_msg_size=0)
        except BaseException:
            await session.close()
            raise
        return cls(session, ws)

    async def __aenter__(self) -> "RpcClient":
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def _read(self) -> None:
        try:
            async for msg in self._ws:
                if msg.type != aiohttp.WSMsgType.TEXT:
                    break
                data = json.loads(msg.data)
                fut = self._pending.pop(data.get("id"), None) if "id" in data else None
                if fut is None:
                    self.events.put_nowait((time.perf_counter(), data))
                elif not fut.done():
                    if "error" in data:
                        fut.set_exception(RpcError(data["error"]))
                    else:
                        fut.set_result(data.get("result"))
        finally:
            for fut in self._pending.values():
                if not fut.done():
                    fut.set_exception(ConnectionError("connection closed"))
            self._pending.clear()

    async def call(self, method: str, *params: Any, timeout: float = 120.0) -> Any:
        """The result of a call; an error answer raises RpcError."""
        self._next_id += 1
        msg_id = self._next_id
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[msg_id] = fut
        await self._ws.send_str(json.dumps({"jsonrpc": "2.0", "id": msg_id, "method": method,
                                            "params": list(params)}))
        try:
            return await asyncio.wait_for(fut, timeout)
        finally:
            self._pending.pop(msg_id, None)

    async def next_event(self, predicate: Callable[[dict[str, Any]], bool],
                         timeout: float = 30.0) -> tuple[float, dict[str, Any]]:
        """The next notification that satisfies predicate, with its arrival time (perf_counter)."""
        deadline = time.perf_counter() + timeout
        while True:
            remaining = deadline - time.perf_counter()
            if remaining <= 0:
                raise TimeoutError("no matching event")
            arrived, event = await asyncio.wait_for(self.events.get(), remaining)
            if predicate(event):
                return arrived, event

    def drain_events(self) -> None:
        """Forget the notifications received so far."""
        while not self.events.empty():
            self.events.get_nowait()

    async def close(self) -> None:
        await self._ws.close()
        await self._reader
        await self._session.close()


def quiet_libvirt() -> None:
    """Stop libvirt-python printing every error to stderr (the bench reports the ones that matter)."""
    import libvirt

    def ignore(_ctx: object, _err: object) -> None:
        pass
    libvirt.registerErrorHandler(ignore, None)


# -- processes ----------------------------------------------------------------------------------
@dataclass
class Daemon:
    """A daemon subprocess on a private config in a temp dir."""

    process: subprocess.Popen[bytes]
    tmp: Path
    port: int
    pool: str
    log_path: Path

    @property
    def tcp(self) -> Endpoint:
        return Endpoint.tcp(self.port)

    @property
    def unix(self) -> Endpoint:
        return Endpoint.unix_socket(str(self.tmp / "middlewared.sock"))

    def log_tail(self, chars: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-chars:]


def spawn(argv: Sequence[str], log_path: Path) -> subprocess.Popen[bytes]:
    """Start a process from the repo root with its output in log_path (no waiting)."""
    with open(log_path, "ab") as log:
        return subprocess.Popen(list(argv), stdout=log, stderr=subprocess.STDOUT, cwd=str(ROOT),
                                env=dict(os.environ, PYTHONUNBUFFERED="1"))


def spawn_daemon(tmp: Path, pool: str, extra: str = "") -> Daemon:
    """Start `python -m middlewared` at its default log level (not --debug, as in production)."""
    port = free_port()
    config = write_config(tmp, port, pool, extra)
    log_path = tmp / "daemon.log"
    process = spawn([sys.executable, "-m", "middlewared", "--config", str(config)], log_path)
    return Daemon(process, tmp, port, pool, log_path)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM, then SIGKILL when it does not exit in time."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


async def first_pong(endpoint: Endpoint, process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """Poll until core.ping is answered; raise when the process exits or time runs out."""
    deadline = time.perf_counter() + timeout
    while time.perf_counter() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} before answering")
        try:
            async with await RpcClient.open(endpoint) as client:
                if await client.call("core.ping", timeout=5) == "pong":
                    return
        except (aiohttp.ClientError, ConnectionError, OSError):
            pass
        await asyncio.sleep(0.005)
    raise TimeoutError("server did not answer core.ping")


# -- statistics and output ----------------------------------------------------------------------
def percentile(values: Sequence[float], p: float) -> float:
    """The p-th percentile (0-100) with linear interpolation between closest ranks."""
    ordered = sorted(values)
    if not ordered:
        return math.nan
    k = (len(ordered) - 1) * p / 100
    lo, hi = math.floor(k), math.ceil(k)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def fmt(value: float | None, digits: int = 1) -> str:
    """A number with thousands separators, or '-' when unknown."""
    if value is None or math.isnan(value):
        return "-"
    return f"{value:,.{digits}f}"


def ratio(value: float | None, baseline: float | None) -> str:
    if value is None or baseline is None or not baseline or math.isnan(value) or math.isnan(baseline):
        return "-"
    return f"{value / baseline:.2f}"


@dataclass
class Table:
    """A titled text table; notes are printed full width below the rows."""

    title: str
    headers: Sequence[str]
    rows: list[Sequence[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, *cells: str) -> None:
        self.rows.append(cells)

    def note(self, text: str) -> None:
        self.notes.append(text)

    def render(self) -> str:
        widths = [max(len(str(r[i])) for r in [self.headers, *self.rows] if i < len(r))
                  for i in range(len(self.headers))]

        def line(cells: Sequence[str]) -> str:
            first, *rest = cells
            return "  ".join([str(first).ljust(widths[0]), *(str(c).rjust(w) for c, w in zip(rest, widths[1:]))])
        rule = "-" * (sum(widths) + 2 * (len(widths) - 1))
        out = [self.title, rule, line(self.headers), rule, *(line(r) for r in self.rows), rule]
        out.extend(f"  {n}" for n in self.notes)
        return "\n".join(out)

    def print(self) -> None:
        print(self.render() + "\n", flush=True)


async def bulk(count: int, call: Callable[[int], Awaitable[None]]) -> list[str]:
    """Run call(0..count-1) with IN_FLIGHT at a time; stop early after MAX_ERRORS failures."""
    errors: list[str] = []
    indexes = iter(range(count))

    async def worker() -> None:
        for i in indexes:
            if len(errors) >= MAX_ERRORS:
                return
            try:
                await call(i)
            except (RpcError, TimeoutError) as e:
                errors.append(f"{type(e).__name__}: {e}" if str(e) else type(e).__name__)
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return errors


def tenth_rates(t0: float, answered: Sequence[float]) -> tuple[float, float]:
    """VMs/s over the first tenth of the answers (from t0) and over the last tenth."""
    tenth = len(answered) // 10
    if tenth < 2:
        return 0.0, 0.0
    first = tenth / (answered[tenth - 1] - t0)
    last = tenth / (answered[-1] - answered[-tenth - 1])
    return first, last


def cpu_ns(pid: int) -> int:
    """CPU time of every thread of a process so far, in ns (schedstat: finer than the 10 ms of clock ticks)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat") as f:
                total += int(f.read().split()[0])
        except (OSError, ValueError):
            pass  # a thread that ended meanwhile
    return total
