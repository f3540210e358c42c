"""bench velocity: the Velocity REST API beside JSON-RPC on the same daemon and data, and a streamed upload
beside `cp` of the same file.

Figures: POST /v/vm/list of N VMs vs vm.query of the same VMs; POST /v/vm/state vs vm.query of one VM (p50,
p99); PUT /m/media/upload of a file vs `cp` of it into the same directory followed by `sync` of the copy
(the daemon fsyncs the file before it answers), in alternating rounds (MB/s, target >= 0.7x), beside the
raw HTTP floor (the same curl into a bare aiohttp server that drops the body) and the CPU time each server
spends per GiB, with the daemon's RSS sampled during the uploads (it streams: the RSS must stay flat).
"""
from __future__ import annotations

import asyncio
import json
import os
import sqlite3
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import libvirt
import psutil

from bench.common import (RpcClient, Table, cleanup_libvirt, first_pong, fmt, percentile, quiet_libvirt, ratio,
                          spawn_daemon, stop_process)
from bench.rpc import launch_echo

URI = "qemu:///system"
IN_FLIGHT = 16
LIST_CALLS = 30
STATE_CALLS = 300
PASSWORD = "bench-root-password"
CHUNK = 1 << 20
HEADERS = ["figure", "REST", "baseline", "ratio", "target", "note"]


def config(tmp: Path) -> str:
    return f"""
[auth]
failed_login_delay = 0.0
rate_limit_calls = 100000

[velocity]
nat_network = "mwbench{os.getpid()}"

[[velocity.pools]]
mpid = 1
name = "bench"
path = "{tmp}/storage/media"
"""


async def timed(calls: int, call: Callable[[], Awaitable[Any]]) -> list[float]:
    """Milliseconds of each of `calls` sequential calls."""
    out = []
    for _ in range(calls):
        t0 = time.perf_counter()
        await call()
        out.append((time.perf_counter() - t0) * 1000)
    return out


def row(table: Table, name: str, rest: list[float], base: list[float], note: str) -> None:
    for p in (50, 99):
        r, b = percentile(rest, p), percentile(base, p)
        table.add(f"{name} p{p}, ms", fmt(r, 2), fmt(b, 2), ratio(r, b), "", note if p == 50 else "")


async def run(vms: int = 1000, upload_gib: float = 1.0, rounds: int = 3) -> None:
    quiet_libvirt()
    table = Table(f"Velocity REST with {vms:,} VMs (baseline: JSON-RPC on the same daemon; cp for the upload)",
                  HEADERS)
    pool = f"mwbenchv{os.getpid()}"
    with tempfile.TemporaryDirectory(prefix="mwbench-velocity-") as tmp:
        path = Path(tmp)
        daemon = spawn_daemon(path, pool, config(path))
        try:
            await first_pong(daemon.unix, daemon.process)
            async with await RpcClient.open(daemon.unix) as rpc, aiohttp.ClientSession() as http:
                base = f"http://127.0.0.1:{daemon.port}"
                await rpc.call("user.set_root_password", PASSWORD)
                async with http.post(f"{base}/u/auth", json={"username": "root", "password": PASSWORD}) as r:
                    key = (await r.json())["authkey"]
                headers = {"Authorization": f"Bearer {key}"}
                gid, ids = await populate(rpc, vms)
                await listing(table, rpc, http, base, headers, gid, ids)
                uploads = Uploads(http, rpc, base, headers, path / "upload.bin", path / "storage", "",
                                  int(upload_gib * 2**30))
                await upload(table, uploads, daemon.process.pid, rounds)
        except Exception as e:
            table.note(f"aborted: {type(e).__name__}: {e}")
            table.note(daemon.log_tail(1500))
        finally:
            stop_process(daemon.process)
            remove_domains(path / "db" / "middlewared.db")
            cleanup_libvirt(pool)
    table.print()


async def populate(rpc: RpcClient, vms: int) -> tuple[int, list[int]]:
    """A VM group holding `vms` VMs made over JSON-RPC (what the REST side lists)."""
    group = await rpc.call("vm_group.create", {"name": "bench"})
    ids: list[int] = []
    names = iter(range(vms))

    async def worker() -> None:
        for i in names:
            ids.append((await rpc.call("vm.create", {"name": f"vbench{i}", "memory": 64, "autostart": False}))["id"])
    t0 = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    await rpc.call("vm_group.update", group["id"], {"vms": ids})
    print(f"bench velocity: {len(ids)} VMs made in {time.perf_counter() - t0:.1f} s", flush=True)
    return int(group["id"]), ids


async def listing(table: Table, rpc: RpcClient, http: aiohttp.ClientSession, base: str, headers: dict[str, str],
                  gid: int, ids: list[int]) -> None:
    async def rest(path: str, body: dict[str, Any]) -> Any:
        async with http.post(base + path, json=body, headers=headers) as r:
            assert r.status == 200, await r.text()
            return await r.json()
    listed = await rest("/v/vm/list", {"gid": gid})
    assert len(listed["vms"]) == len(ids), "the REST list and the group differ"
    rest_list = await timed(LIST_CALLS, lambda: rest("/v/vm/list", {"gid": gid}))
    rpc_list = await timed(LIST_CALLS, lambda: rpc.call("vm.query", [["id", "in", ids]]))
    row(table, "/v/vm/list vs vm.query", rest_list, rpc_list, f"{len(ids):,} VMs each, {LIST_CALLS} calls")
    one = ids[len(ids) // 2]
    rest_state = await timed(STATE_CALLS, lambda: rest("/v/vm/state", {"vmid": one}))
    rpc_state = await timed(STATE_CALLS, lambda: rpc.call("vm.query", [["id", "=", one]], {"get": True}))
    row(table, "/v/vm/state vs vm.query get", rest_state, rpc_state, f"{STATE_CALLS} calls, one VM")


@dataclass
class Uploads:
    """The sides of the upload figures: the same file through each, timed as a whole."""

    http: aiohttp.ClientSession
    rpc: RpcClient
    base: str
    headers: dict[str, str]
    source: Path
    storage: Path
    sink_url: str
    size: int
    mids: list[str] = field(default_factory=list)

    async def velocity(self, n: int) -> None:
        """PUT /m/media/upload with curl -T; the daemon fsyncs the file before it answers."""
        answer = json.loads(await curl(["-T", str(self.source)], f"{self.base}/m/media/upload", {
            **self.headers, "x-velocity-mpid": "1", "x-velocity-gid": "0", "x-velocity-name": f"bench{n}.bin",
            "x-velocity-type": "DISK", "x-velocity-readonly": "false"}))
        assert answer.get("size") == self.size, answer
        self.mids.append(answer["mid"])

    async def truenas(self, n: int) -> None:
        """POST /_upload into filesystem.put (multipart, as TrueNAS clients send it) with curl -F."""
        token = await self.rpc.call("auth.generate_token", 300, {}, False, True)
        data = json.dumps({"method": "filesystem.put", "params": [str(self.storage / f"put{n}.bin")]})
        await curl(["-F", f"data={data}", "-F", f"file=@{self.source}"], f"{self.base}/_upload?auth_token={token}", {})

    async def copy(self, n: int) -> None:
        """cp, then fsync of the copy alone (`sync FILE`): what the daemon does before it answers."""
        target = self.storage / "cp-copy"
        await run_quietly("cp", str(self.source), str(target))
        await run_quietly("sync", str(target))
        target.unlink()

    async def floor(self, n: int) -> None:
        """curl -T into a bare aiohttp server that reads the body and drops it."""
        await curl(["-T", str(self.source)], self.sink_url, {})

    async def clean(self) -> None:
        """Remove what a round wrote (not timed)."""
        for mid in self.mids:
            async with self.http.delete(f"{self.base}/m/media", json={"mid": mid}, headers=self.headers) as r:
                assert r.status == 200, await r.text()
        self.mids.clear()
        for put in self.storage.glob("put*.bin"):
            put.unlink()


async def upload(table: Table, uploads: Uploads, pid: int, rounds: int) -> None:
    """Each side in turn: a warm-up round, then `rounds` counted ones, the sides taking turns going first
    (the machine may be shared); medians with their range, the CPU time each server spent per GiB, and the
    daemon's RSS sampled all along."""
    with open(uploads.source, "wb") as f:  # real bytes: a sparse file would flatter cp
        block = os.urandom(CHUNK)
        for _ in range(uploads.size // CHUNK):
            f.write(block)
    os.sync()
    daemon = psutil.Process(pid)
    rss: list[int] = [daemon.memory_info().rss]
    sides = [("upload", uploads.velocity), ("/_upload", uploads.truenas), ("cp", uploads.copy),
             ("floor", uploads.floor)]
    rates: dict[str, list[float]] = {name: [] for name, _ in sides}
    cpu: dict[str, list[float]] = {"upload": [], "/_upload": [], "floor": []}
    sink = launch_echo(uploads.source.parent)
    try:
        await first_pong(sink.tcp, sink.process)
        servers = {"upload": daemon, "/_upload": daemon, "floor": psutil.Process(sink.process.pid)}
        uploads.sink_url = sink.tcp.url.replace("ws:", "http:").removesuffix("/api/current") + "/sink"
        for n in range(rounds + 1):
            for name, side in sides[n % len(sides):] + sides[:n % len(sides)]:
                server = servers.get(name)
                c0, t0 = server.cpu_times() if server else None, time.perf_counter()
                task = asyncio.create_task(side(n))
                while not task.done():
                    rss.append(daemon.memory_info().rss)
                    await asyncio.wait([task], timeout=0.05)
                await task
                took = time.perf_counter() - t0
                if n and server is not None and c0 is not None:
                    c1 = server.cpu_times()
                    cpu[name].append((c1.user + c1.system - c0.user - c0.system) * 2**30 / uploads.size)
                if n:
                    rates[name].append(uploads.size / took / 1e6)
            await uploads.clean()
    finally:
        stop_process(sink.process)
        uploads.source.unlink()
    report(table, rates, cpu, rss, uploads.size, rounds)


def report(table: Table, rates: dict[str, list[float]], cpu: dict[str, list[float]], rss: list[int], size: int,
           rounds: int) -> None:
    def span(values: list[float]) -> str:
        return f"{min(values):,.0f}-{max(values):,.0f}"
    rate = {name: statistics.median(values) for name, values in rates.items()}
    seconds = {name: statistics.median(values) for name, values in cpu.items()}
    table.add("upload, MB/s (median)", fmt(rate["upload"]), fmt(rate["cp"]), ratio(rate["upload"], rate["cp"]),
              ">= 0.70", f"{size / 2**30:.2f} GiB, {rounds} rounds; /m/media/upload with curl -T (the daemon "
              f"fsyncs) vs cp + sync of the copy; ranges {span(rates['upload'])} vs {span(rates['cp'])}")
    table.add("  /_upload, MB/s", fmt(rate["/_upload"]), fmt(rate["cp"]), ratio(rate["/_upload"], rate["cp"]), "",
              f"filesystem.put, multipart with curl -F; range {span(rates['/_upload'])}")
    table.add("  raw HTTP floor, MB/s", fmt(rate["floor"]), fmt(rate["cp"]), ratio(rate["floor"], rate["cp"]), "",
              f"curl -T into a bare aiohttp server that drops the body (no disk); range {span(rates['floor'])}")
    for name in ("upload", "/_upload"):
        table.add(f"  server CPU, s per GiB ({name})", fmt(seconds[name], 2), fmt(seconds["floor"], 2),
                  ratio(seconds[name], seconds["floor"]), "",
                  "user + system of the daemon vs of the bare server: how much the load can slow it")
    grew = (max(rss) - rss[0]) / 2**20
    table.add("  daemon RSS growth, MiB", fmt(grew), "-", "-", "flat",
              f"start {rss[0] / 2**20:.0f} MiB, max {max(rss) / 2**20:.0f} MiB, {len(rss)} samples")


async def curl(options: list[str], url: str, headers: dict[str, str]) -> bytes:
    """curl (what a user would run; the bench's own Python would compete for the CPU): its output."""
    argv = ["curl", "-sS", "--fail-with-body", *options, url]
    for name, value in headers.items():
        argv += ["-H", f"{name}: {value}"]
    return await run_quietly(*argv)


async def run_quietly(*argv: str) -> bytes:
    process = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await process.communicate()
    if process.returncode:
        raise RuntimeError(f"{argv[0]} failed ({process.returncode}): {out[-300:]!r}")
    return out


def remove_domains(db_path: Path) -> None:
    """Undefine the daemon's domains (named from its database) directly: faster than 1,000 vm.delete calls."""
    if not db_path.exists():
        return
    with sqlite3.connect(str(db_path)) as db:
        names = [f"{i}_{n}" for i, n in db.execute("SELECT id, name FROM vm_vm")]
    conn = libvirt.open(URI)
    try:
        for name in names:
            try:
                conn.lookupByName(name).undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM)
            except libvirt.libvirtError:
                pass
    finally:
        conn.close()
