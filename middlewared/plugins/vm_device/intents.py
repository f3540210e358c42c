"""Intent records: volumes and files a write makes before the row that owns them commits.

A volume (or RAW file) is made before the transaction that stores its device row, since the row needs its
path; a daemon killed between the two would leave it in the pool with nothing naming it. So an intent naming
it is committed first; the transaction that stores a row naming it deletes the intent (the row now owns it), and
a write that fails removes what it made and then the intent. What survives a restart is an intent of an earlier
life of the daemon whose owner never committed: start-up removes what it names, unless something uses it.

Only this instance's database holds its intents, so volumes of other daemons sharing the pool, and volumes made
any other way, are never named. One doubt remains: killed after its intent committed but before libvirt made the
volume, the name could be taken by someone else before the restart. A volume that any domain on the libvirtd or
any row of ours refers to is therefore kept.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import secrets
import shutil
import sqlite3
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, AsyncIterator, Iterable, Mapping, Sequence

import libvirt
from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm.domain_xml import METADATA_NS
from middlewared.plugins.vm_device import pool
from middlewared.plugins.vm_device.paths import PathError, confine

if TYPE_CHECKING:
    from middlewared.datastore import Datastore
    from middlewared.plugins.vm.hypervisor import Hypervisor

logger = logging.getLogger(__name__)

VOLUME, FILE, TREE = "volume", "file", "tree"  # a volume, a file, a work directory and all it holds


@dataclass(frozen=True)
class Leftover:
    """What a write makes: a volume ("<pool>/<name>"), a file or a work directory (an absolute path)."""

    kind: str
    target: str


def targets_of(attributes: Iterable[Mapping[str, object]]) -> set[str]:
    """The volumes and files device attributes name (what a stored row owns)."""
    return {str(v) for a in attributes for k in ("zvol_name", "path") if (v := a.get(k))}


def claim(db: sqlite3.Connection, attributes: Iterable[Mapping[str, object]]) -> None:
    """Inside the transaction that stores these device rows: they own what they name now."""
    _drop(db, targets_of(attributes))


def _drop(db: sqlite3.Connection, targets: Iterable[str]) -> None:
    names = sorted(set(targets))
    if names:
        db.execute(f"DELETE FROM storage_intent WHERE target IN ({', '.join('?' * len(names))})", names)


class Intents:
    """The storage_intent table as one daemon life uses it."""

    def __init__(self, db: "Datastore") -> None:
        self.db = db
        # Start-up clean-up takes only the intents of earlier lives: this life's belong to writes in progress.
        self.life = secrets.token_hex(8)

    async def begin(self, *leftovers: Leftover) -> None:
        """Record (committed) that a write is about to make (or to leave unowned) these."""
        def run(db: sqlite3.Connection) -> None:
            db.executemany("INSERT INTO storage_intent (kind, target, life, created) VALUES (?, ?, ?, ?)",
                           [(x.kind, x.target, self.life, time.time()) for x in leftovers])
        if leftovers:
            await self.db.transaction(run)

    async def forget(self, targets: Iterable[str]) -> None:
        """Drop the intents naming these targets: they were removed again, or belong to the user now."""
        names = set(targets)
        if names:
            await self.db.transaction(lambda db: _drop(db, names))

    @contextlib.asynccontextmanager
    async def making(self, *leftovers: Leftover) -> AsyncIterator[None]:
        """Record the intents, then run the body that makes the leftovers (or deletes the rows owning them); if
        the body fails it removed what it made (or never made it: it may be someone else's), or the rows still own
        them, so the intents go too."""
        await self.begin(*leftovers)
        try:
            yield
        except BaseException:
            await asyncio.shield(self.forget(x.target for x in leftovers))
            raise

    @contextlib.asynccontextmanager
    async def scratch(self, path: str) -> AsyncIterator[None]:
        """A new work directory for the body (mode 0700), removed with all it holds afterwards, whatever happens
        (at the next start if the daemon is killed meanwhile)."""
        async with self.making(Leftover(TREE, path)):
            await asyncio.to_thread(os.mkdir, path, 0o700)
        try:
            yield
        finally:
            await asyncio.shield(asyncio.to_thread(shutil.rmtree, path, True))
            await asyncio.shield(self.forget([path]))

    async def clean_up(self, hv: "Hypervisor", owned: set[str], instance: str | None,
                       roots: Sequence[str]) -> list[str]:
        """Start-up: remove what intents of earlier lives name, except what `owned` (our rows) or a domain of
        another instance (or of none) on the libvirtd refers to, and files outside the storage roots; returns
        what was removed. An intent whose removal fails stays for the next start."""
        rows = await self.db.fetchall("SELECT kind, target FROM storage_intent WHERE life != ?", (self.life,))
        if not rows:
            return []
        # Our own domains stand for our rows (one left by a create that never committed is no owner).
        used = owned | await hv.run(_domain_references, instance)
        removed, done = [], []
        for row in rows:
            leftover = Leftover(row["kind"], row["target"])
            try:
                if leftover.target not in used and await _remove(hv, leftover, roots):
                    removed.append(leftover.target)
            except PathError as e:
                logger.warning("not removing %s: %s", leftover.target, e)
            except (OSError, CallError) as e:
                logger.warning("cannot remove %s %s left by an unfinished write: %s", leftover.kind,
                               leftover.target, e)
                continue
            done.append(leftover.target)
        await self.forget(done)
        return removed


async def _remove(hv: "Hypervisor", leftover: Leftover, roots: Sequence[str]) -> bool:
    """Remove a volume or file; False when it does not exist."""
    if leftover.kind == VOLUME:
        pool_name, _, name = leftover.target.partition("/")
        return bool(await hv.run(pool.delete_volume, pool_name, name))
    # Resolved again, as vm.device.delete does: the file must still be inside the roots.
    path = confine(leftover.target, roots)
    if leftover.kind == TREE:
        if not os.path.isdir(path):
            return False
        await asyncio.to_thread(shutil.rmtree, path)
        return True
    try:
        await asyncio.to_thread(os.unlink, path)
    except FileNotFoundError:
        return False
    return True


def _domain_references(conn: libvirt.virConnect, instance: str | None) -> set[str]:
    """The volumes ("<pool>/<name>") and files the disks of the domains not tagged as `instance`'s use
    (blocking)."""
    out: set[str] = set()
    for dom in conn.listAllDomains():
        try:
            root = etree.fromstring(dom.XMLDesc(libvirt.VIR_DOMAIN_XML_INACTIVE))
        except libvirt.libvirtError:
            continue  # undefined meanwhile
        owner = root.find(f"metadata/{{{METADATA_NS}}}owner")
        if instance is not None and owner is not None and owner.get("instance") == instance:
            continue
        for source in root.iterfind("devices/disk/source"):
            if source.get("pool") and source.get("volume"):
                out.add(f"{source.get('pool')}/{source.get('volume')}")
            if source.get("file"):
                out.add(str(source.get("file")))
    return out
