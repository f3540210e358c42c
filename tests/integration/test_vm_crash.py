"""SIGKILL of the daemon while 16 vm.create calls are in flight, at many instants: after a restart no domain
of this daemon lacks its row, every answered create is there, ids are never given twice, an unanswered
create can be retried, and another daemon's domain on the same libvirtd is left alone."""
from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import sqlite3
import threading
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterator

import aiohttp
import libvirt
import pytest

from middlewared.plugins.vm.domain_xml import METADATA_NS
from middlewared.plugins.vm.reconcile import parse_owner
from tests.support import Daemon, cleanup_libvirt, connect, start_daemon, stop_daemon, unique

pytestmark = pytest.mark.timeout(600)

IN_FLIGHT = 16
# Answers to wait for before the kill, one daemon life each; the database carries over between lives.
KILL_AFTER = (1, 2, 3, 5, 8, 13, 21, 31)
# Kills at a define race the daemon's COMMIT: more lives (at most this many in all) until one falls between.
MAX_LIVES = 24


@dataclass
class Life:
    """What one daemon life was asked and answered before it was killed."""

    daemon: Daemon
    prefix: str
    sent: dict[int, str] = field(default_factory=dict)        # request id -> VM name
    answered: dict[str, int] = field(default_factory=dict)    # VM name -> id the answer gave
    # Set once enough answers came: the next domain the daemon defines for an unanswered create kills it,
    # inside the window between its defineXML and its COMMIT.
    armed: bool = False

    def kill(self) -> None:
        if self.daemon.process.poll() is None:
            self.daemon.process.kill()

    def on_lifecycle(self, conn: libvirt.virConnect, dom: libvirt.virDomain, event: int, detail: int,
                     opaque: Any) -> None:
        if self.armed and event == libvirt.VIR_DOMAIN_EVENT_DEFINED and dom.name().partition("_")[2].startswith(
                self.prefix):
            self.kill()


_events_started = False


def start_libvirt_events() -> None:
    """libvirt's default event loop in a thread of its own (registered once, before any connection)."""
    global _events_started
    if not _events_started:
        libvirt.virEventRegisterDefaultImpl()
        threading.Thread(target=lambda: [libvirt.virEventRunDefaultImpl() for _ in iter(int, 1)],
                         daemon=True).start()
        _events_started = True


@pytest.fixture
def lv(libvirtd: str) -> Iterator[libvirt.virConnect]:
    libvirt.registerErrorHandler(lambda ctx, err: None, None)
    start_libvirt_events()
    conn = libvirt.open(libvirtd)
    yield conn
    conn.close()


def db_path(daemon: Daemon) -> Path:
    return daemon.tmp / "db" / "middlewared.db"


def read_db(daemon: Daemon) -> tuple[str, dict[int, str]]:
    """(instance UUID, {row id: domain name}) straight from the daemon's database file."""
    with contextlib.closing(sqlite3.connect(str(db_path(daemon)))) as db:
        instance = db.execute("SELECT value FROM settings WHERE key = 'instance_uuid'").fetchone()[0]
        rows = {i: f"{i}_{n}" for i, n in db.execute("SELECT id, name FROM vm_vm")}
    return str(instance), rows


def owned(conn: libvirt.virConnect, instance: str) -> dict[str, int]:
    """Domain name -> row id, for every domain whose metadata names this instance."""
    out = {}
    for dom in conn.listAllDomains():
        with contextlib.suppress(libvirt.libvirtError):
            owner = parse_owner(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
            if owner is not None and owner[0] == instance:
                out[dom.name()] = owner[1]
    return out


async def creates_until_killed(life: Life, kill_after: int, at_define: bool) -> None:
    """Keep IN_FLIGHT vm.create calls going; after kill_after answers SIGKILL the daemon, at once or (at_define)
    the moment libvirt reports the next domain defined."""
    ids = itertools.count(1)
    async with aiohttp.ClientSession(connector=aiohttp.UnixConnector(path=life.daemon.socket)) as session:
        ws = await session.ws_connect("ws://localhost/api/current", max_msg_size=0)

        async def send() -> None:
            rid = next(ids)
            life.sent[rid] = f"{life.prefix}{rid}"
            with contextlib.suppress(ConnectionError):
                await ws.send_str(json.dumps({"jsonrpc": "2.0", "id": rid, "method": "vm.create", "params": [
                    {"name": life.sent[rid], "memory": 64, "autostart": False}]}))
        for _ in range(IN_FLIGHT):
            await send()
        # Answers already on their way when the daemon dies are read to the end of the stream.
        async for msg in ws:
            data = json.loads(msg.data)
            if data.get("id") not in life.sent:
                continue
            assert "result" in data, data
            life.answered[data["result"]["name"]] = data["result"]["id"]
            if len(life.answered) >= kill_after:
                if not at_define:
                    life.kill()
                life.armed = True
            if life.daemon.process.poll() is None:
                await send()
    life.kill()
    life.daemon.process.wait()


async def test_sigkill_during_creates_leaves_no_trace(tmp_path: Path, lv: libvirt.virConnect) -> None:
    daemon = start_daemon(tmp_path)
    instance, _ = read_db(daemon)
    foreign = define_foreign(lv)
    answered: dict[str, int] = {}
    highest_seen = 0
    try:
        for life_no, kill_after in enumerate(itertools.chain(KILL_AFTER, itertools.cycle(KILL_AFTER))):
            extra = life_no >= len(KILL_AFTER)
            if extra and ("undefined" in daemon.log() or life_no == MAX_LIVES):
                break
            life = Life(daemon, unique("crash") + "_")
            callback = lv.domainEventRegisterAny(None, libvirt.VIR_DOMAIN_EVENT_ID_LIFECYCLE, life.on_lifecycle, None)
            try:
                await creates_until_killed(life, kill_after, at_define=extra or life_no % 2 == 1)
            finally:
                lv.domainEventDeregisterAny(callback)
            answered.update(life.answered)
            highest_seen = max([highest_seen, *owned(lv, instance).values()])
            if life_no == 2:
                # A row whose domain went missing (a delete that never committed): defined again.
                name, vm_id = next(iter(life.answered.items()))
                lv.lookupByName(f"{vm_id}_{name}").undefine()
            daemon = start_daemon(tmp_path, port=daemon.port, pool=daemon.pool)
            await check_consistent(daemon, lv, instance, answered)
            await retry_unanswered(daemon, life, answered, highest_seen)
        assert lv.lookupByName(foreign).metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS)
        assert "undefined" in daemon.log(), "no kill fell between a defineXML and its COMMIT"
    finally:
        with contextlib.suppress(libvirt.libvirtError):
            lv.lookupByName(foreign).undefine()
        if daemon.process.poll() is None:
            stop_daemon(daemon)
        cleanup_libvirt(daemon.pool, db_path(daemon))


def define_foreign(conn: libvirt.virConnect) -> str:
    """A stopped domain tagged by another daemon instance, with no row here, named like one of ours."""
    name = f"{9_000_000 + uuid.uuid4().int % 1_000_000}_{unique('foreign')}"
    conn.defineXML(f"""<domain type="qemu"><name>{name}</name><memory unit="MiB">64</memory>
      <metadata><mw:owner xmlns:mw="{METADATA_NS}" instance="{uuid.uuid4()}" vm="{name.split('_')[0]}"/></metadata>
      <os><type arch="x86_64">hvm</type></os></domain>""")
    return name


async def check_consistent(daemon: Daemon, conn: libvirt.virConnect, instance: str,
                           answered: dict[str, int]) -> None:
    """Own domains and rows match one to one; every answered create is listed with its answered id."""
    _, rows = read_db(daemon)
    assert set(owned(conn, instance)) == set(rows.values())
    async with connect(daemon) as rpc:
        listed = {vm["name"]: vm["id"] for vm in await rpc.call("vm.query")}
    assert {name: listed.get(name) for name in answered} == answered


async def retry_unanswered(daemon: Daemon, life: Life, answered: dict[str, int], highest_seen: int) -> None:
    """A create the daemon never answered succeeds when retried, with an id libvirt has never seen; one
    that committed just before the kill (its answer lost) is there already."""
    unanswered = set(life.sent.values()) - set(life.answered)
    async with connect(daemon) as rpc:
        listed = {vm["name"]: vm["id"] for vm in await rpc.call("vm.query")}
        for name in sorted(unanswered):
            if name in listed:
                answered[name] = listed[name]
                continue
            vm = await rpc.call("vm.create", {"name": name, "memory": 64, "autostart": False})
            assert vm["id"] > highest_seen, (vm, highest_seen)
            answered[name] = vm["id"]
