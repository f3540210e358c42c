"""bench velocity: the Velocity REST API beside JSON-RPC on the same daemon and data, and a streamed upload
beside `cp` of the same file.

Figures: POST /v/vm/list of N VMs vs vm.query of the same VMs; POST /v/vm/state vs vm.query of one VM (p50,
p99); PUT /m/media/upload of a file vs `cp` of it into the same directory (MB/s, target >= 0.7x), with the
daemon's RSS sampled during the upload (it streams: the RSS must stay flat).
"""
from __future__ import annotations

import asyncio
import json
import os
import shutil
import sqlite3
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any, Awaitable, Callable

import aiohttp
import libvirt
import psutil

from bench.common import (RpcClient, Table, cleanup_libvirt, first_pong, fmt, percentile, quiet_libvirt, ratio,
                          spawn_daemon, stop_process)

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


async def run(vms: int = 1000, upload_gib: float = 1.0) -> None:
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
                await upload(table, http, base, headers, path, daemon.process.pid, int(upload_gib * 2**30))
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


async def upload(table: Table, http: aiohttp.ClientSession, base: str, headers: dict[str, str], tmp: Path,
                 pid: int, size: int) -> None:
    source, media = tmp / "upload.bin", tmp / "storage" / "media"
    block = os.urandom(CHUNK)
    with open(source, "wb") as f:  # real bytes: a sparse file would flatter cp
        for _ in range(size // CHUNK):
            f.write(block)
    os.sync()
    t0 = time.perf_counter()
    subprocess.run(["cp", str(source), str(media / "cp-copy")], check=True)
    os.sync()
    cp_rate = size / (time.perf_counter() - t0) / 1e6
    os.unlink(media / "cp-copy")
    process = psutil.Process(pid)
    rss: list[int] = [process.memory_info().rss]
    done = asyncio.Event()

    async def sample() -> None:
        while not done.is_set():
            rss.append(process.memory_info().rss)
            await asyncio.sleep(0.05)
    sampler = asyncio.create_task(sample())
    # curl -T streams the file (what a user would run); the bench's own Python would compete for the CPU.
    argv = ["curl", "-sS", "-T", str(source), f"{base}/m/media/upload"]
    for name, value in {**headers, "x-velocity-mpid": "1", "x-velocity-gid": "0", "x-velocity-name": "bench.bin",
                        "x-velocity-type": "DISK", "x-velocity-readonly": "false"}.items():
        argv += ["-H", f"{name}: {value}"]
    t0 = time.perf_counter()
    curl = await asyncio.create_subprocess_exec(*argv, stdout=asyncio.subprocess.PIPE)
    out, _ = await curl.communicate()
    os.sync()
    took = time.perf_counter() - t0
    answer = json.loads(out)
    done.set()
    await sampler
    assert answer.get("size") == size, answer
    rate = size / took / 1e6
    table.add("upload, MB/s", fmt(rate), fmt(cp_rate), ratio(rate, cp_rate), ">= 0.70",
              f"{size / 2**30:.2f} GiB with curl -T; cp into the same directory; both synced")
    grew = (max(rss) - rss[0]) / 2**20
    table.add("  daemon RSS growth, MiB", fmt(grew), "-", "-", "flat",
              f"start {rss[0] / 2**20:.0f} MiB, max {max(rss) / 2**20:.0f} MiB, {len(rss)} samples")
    shutil.rmtree(media, ignore_errors=True)
    os.unlink(source)


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
