"""Start-up reconciliation: make libvirt's domains of this daemon instance match the vm_vm rows again.

A write defines its domain inside its database transaction, so a daemon killed between the two leaves
one of them without the other:
- an own domain with no row: the create (or clone) was never answered. It is undefined, so that the
  client's retry can create the VM again under the same name; and the row id it carried is marked used
  (sqlite_sequence) before, so that no later VM is given an id libvirt has already seen.
- an own domain whose name no longer matches its row: a rename that never committed. It is undefined
  (its NVRAM kept) and the row's domain defined again.
- a row with no domain: a delete that never committed (or a domain removed by hand). The domain is
  defined again from the row: every answered create stays present.
Own domains are those whose <metadata> names this instance's UUID: other daemons' domains on the same
libvirtd are never touched. A row whose domain carries no tag at all (defined before tagging) is
redefined, which tags it.
"""
from __future__ import annotations

import logging
import re
import sqlite3
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Callable, Mapping, Sequence

import libvirt
from lxml import etree

from middlewared.errors import CallError
from middlewared.plugins.vm.domain_xml import METADATA_NS
from middlewared.plugins.vm.model import domain_name

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords

logger = logging.getLogger(__name__)

ORPHAN_UNDEFINE = (libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM
                   | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)
STALE_UNDEFINE = libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM
# How domain_name() names every domain of the daemon.
_DAEMON_NAME = re.compile(r"\d+_")


@dataclass(frozen=True)
class Domain:
    """One domain on the libvirtd: its name, whether it runs, and the owner its metadata names."""

    name: str
    active: bool
    instance: str | None = None
    vm_id: int | None = None


@dataclass
class Plan:
    """What reconciliation changes: domains to undefine, rows to define, conflicts it leaves alone."""

    orphans: list[Domain] = field(default_factory=list)
    stale: list[Domain] = field(default_factory=list)
    define: list[int] = field(default_factory=list)
    left_alone: list[str] = field(default_factory=list)

    @property
    def highest_orphan_id(self) -> int:
        return max((d.vm_id or 0 for d in self.orphans), default=0)


def plan(instance: str, domains: Sequence[Domain], rows: Mapping[int, str]) -> Plan:
    """Compare the domains with the rows (id -> expected domain name); a pure function."""
    out = Plan()
    by_name = {d.name: d for d in domains}
    for dom in domains:
        if dom.instance != instance or dom.vm_id is None:
            continue
        expected = rows.get(dom.vm_id)
        if expected == dom.name:
            continue
        if dom.active:
            # Every write path defines domains stopped; a running one without its row is not a crash
            # leftover this can explain, so it is reported rather than destroyed.
            out.left_alone.append(f"{dom.name}: running, but no row names it")
        elif expected is None:
            out.orphans.append(dom)
        else:
            out.stale.append(dom)
    stale_ids = {d.vm_id for d in out.stale}
    for vm_id, name in sorted(rows.items()):
        found = by_name.get(name)
        if found is None or found.instance is None or vm_id in stale_ids:
            out.define.append(vm_id)
        elif found.instance != instance or found.vm_id != vm_id:
            out.left_alone.append(f"{name}: row {vm_id}, but the domain belongs to {found.instance}"
                                  f" row {found.vm_id}")
    return out


def parse_owner(text: str) -> tuple[str, int] | None:
    """(instance, vm id) from the metadata element the daemon writes, or None when it is malformed."""
    try:
        element = etree.fromstring(text.encode())
        return element.get("instance") or "", int(element.get("vm") or "")
    except (etree.XMLSyntaxError, ValueError):
        return None


def list_domains(conn: libvirt.virConnect) -> list[Domain]:
    """Every domain named as the daemon names its own ("{id}_{name}"), with the owner its metadata names
    (blocking): one listing for the whole libvirtd, then one metadata call per such domain. Whether a domain runs
    comes with the listing (its id, -1 when it is stopped, is read without a call); a domain named otherwise can
    be neither an instance's nor a row's."""
    out = []
    for dom in conn.listAllDomains():
        name = dom.name()
        if not _DAEMON_NAME.match(name):
            continue
        try:
            owner = parse_owner(dom.metadata(libvirt.VIR_DOMAIN_METADATA_ELEMENT, METADATA_NS))
        except libvirt.libvirtError as e:
            if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
                continue  # undefined meanwhile
            owner = None  # VIR_ERR_NO_DOMAIN_METADATA: not defined by any instance of this daemon
        out.append(Domain(name, dom.ID() != -1, *(owner or (None, None))))
    return out


def mark_ids_used(db: sqlite3.Connection, highest: int) -> None:
    """Raise vm_vm's AUTOINCREMENT counter to at least `highest`, in its own committed transaction."""
    db.execute("BEGIN IMMEDIATE")
    try:
        updated = db.execute("UPDATE sqlite_sequence SET seq = MAX(seq, ?) WHERE name = 'vm_vm'", (highest,))
        if updated.rowcount == 0:
            db.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('vm_vm', ?)", (highest,))
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def apply(conn: libvirt.virConnect, db: sqlite3.Connection, instance: str,
          stored_xml: Callable[[sqlite3.Connection, int], str]) -> Plan:
    """Reconcile (blocking, in the database thread so that no write interleaves); returns what it did."""
    rows = {int(r[0]): domain_name(int(r[0]), r[1]) for r in db.execute("SELECT id, name FROM vm_vm")}
    todo = plan(instance, list_domains(conn), rows)
    if todo.orphans:
        # Before the undefine: were the daemon killed in between, the next start would find the orphan
        # again, whereas an undefined orphan no longer tells which id it held.
        mark_ids_used(db, todo.highest_orphan_id)
    for dom, flags in [(d, ORPHAN_UNDEFINE) for d in todo.orphans] + [(d, STALE_UNDEFINE) for d in todo.stale]:
        try:
            conn.lookupByName(dom.name).undefineFlags(flags)
        except libvirt.libvirtError as e:
            todo.left_alone.append(f"{dom.name}: cannot undefine: {e.get_error_message()}")
    for vm_id in todo.define:
        try:
            conn.defineXML(stored_xml(db, vm_id))
        except libvirt.libvirtError as e:
            todo.left_alone.append(f"{rows[vm_id]}: cannot define: {e.get_error_message()}")
    return todo


async def reconcile(service: "VMRecords") -> Plan:
    """Reconcile once libvirt is reachable; log what changed."""
    await service.hypervisor.connected.wait()
    conn, instance = service.hypervisor.conn, service.instance
    if conn is None or instance is None:
        return Plan()
    try:
        host = await service.devices.snapshot(None)
        done = await service.middleware.db.exclusively(
            lambda db: apply(conn, db, instance, lambda db, vm_id: service.stored_domain_xml(db, vm_id, host)))
    except (libvirt.libvirtError, CallError) as e:
        # libvirtd went away meanwhile: serve anyway; what is left is found again at the next start.
        logger.error("cannot reconcile libvirt with the database: %s",
                     e.errmsg if isinstance(e, CallError) else e.get_error_message())
        return Plan()
    finally:
        service._cache = None
    if done.orphans:
        logger.warning("undefined %d domains left by creates the daemon never answered: %s", len(done.orphans),
                       ", ".join(d.name for d in done.orphans))
    if done.stale:
        logger.warning("undefined %d domains left by renames that never committed: %s", len(done.stale),
                       ", ".join(d.name for d in done.stale))
    if done.define:
        logger.info("defined %d domains from their rows: %s", len(done.define), ", ".join(map(str, done.define)))
    for problem in done.left_alone:
        logger.error("reconciliation left a domain alone: %s", problem)
    return done
