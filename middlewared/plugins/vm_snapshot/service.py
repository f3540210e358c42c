"""vm.snapshot.*: a tree of snapshots per VM (disks, with or without RAM), taken, reverted and deleted as jobs."""
from __future__ import annotations

import asyncio
import errno
import json
import logging
import os
import shutil
import sqlite3
import time
import uuid
from typing import Any, Mapping, Sequence

from middlewared.crud import query_rows
from middlewared.errors import CallError, InstanceNotFound, ValidationError, ValidationErrors
from middlewared.job import Job
from middlewared.plugins.vm.model import VMRecord, VMState
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm.template import refuse_template
from middlewared.plugins.vm_device.paths import real_roots
from middlewared.plugins.vm_snapshot import schemas as S
from middlewared.plugins.vm_snapshot.engine import Outcome, QcowInternalEngine, SnapshotEngine, Target
from middlewared.service import GET_OPTIONS, QUERY_FILTERS, QUERY_OPTIONS, JobOptions, Service, api_method

logger = logging.getLogger(__name__)

READ, WRITE = ("VM_READ",), ("VM_WRITE",)
COLLECTION = "vm.snapshot.query"
# Beside the storage pool, under the first root: saved RAM and NVRAM copies, a directory per VM uuid.
STATE_DIR = ".vm-snapshots"
# Snapshot operations hold the VM's guard alone: they wait for its starts, stops, clones and updates under way,
# and those issued meanwhile wait for them.
WAITING = ("Waiting for the other operations of VM {name} (start, stop, clone, device or settings changes, "
           "snapshots) to end")


def snapshot_disks(vm: Mapping[str, Any]) -> list[dict[str, str]]:
    """The VM's qcow2 DISK volumes ({zvol_name, path}); CallError naming every disk that cannot hold one."""
    disks, problems = [], []
    for device in vm["devices"]:
        a = device["attributes"]
        if a.get("dtype") == "RAW":
            problems.append(f"RAW disk {a['path']} is a raw image file, which cannot hold snapshots (import it "
                            "into a qcow2 DISK volume with vm.device.import_disk)")
        elif a.get("dtype") == "DISK" and (a.get("format") or "raw") != "qcow2":
            problems.append(f"DISK volume {a['zvol_name']} is raw, which cannot hold snapshots (only qcow2 "
                            "volumes can)")
        elif a.get("dtype") == "DISK":
            disks.append({"zvol_name": a["zvol_name"], "path": a["path"]})
    if problems:
        raise CallError(f"VM {vm['name']} cannot be snapshotted: " + "; ".join(problems), errno.EINVAL)
    return disks


def snapshot_entries(rows: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """API entries of stored rows, each with the ids of its children."""
    children: dict[int, list[int]] = {}
    for r in rows:
        if r["parent"] is not None:
            children.setdefault(r["parent"], []).append(r["id"])
    return [{
        "id": r["id"], "vm": r["vm"], "name": r["name"], "description": r["description"], "parent": r["parent"],
        "children": children.get(r["id"], []), "current": bool(r["current"]),
        "created": {"$date": int(r["created"] * 1000)}, "memory": bool(r["memory"]), "vm_state": r["vm_state"],
        "disks": [d["zvol_name"] for d in json.loads(r["disks"])], "size": r["size"],
        "memory_size": r["memory_size"], "held_ms": r["held_ms"],
    } for r in rows]


class VMSnapshotService(Service):
    """vm.snapshot.*: VM snapshots."""

    namespace = "vm.snapshot"
    # Replaceable by a libvirt-native engine once libvirt snapshots UEFI (pflash) guests itself.
    engine: SnapshotEngine = QcowInternalEngine()

    def __init__(self, middleware: Any) -> None:
        super().__init__(middleware)
        self.counts: dict[int, int] = {}

    @property
    def vms(self) -> VMRecords:
        service = self.middleware.service("vm")
        assert isinstance(service, VMRecords)
        return service

    # -- reading ---------------------------------------------------------------------------------
    async def _rows(self, where: str = "", params: tuple[Any, ...] = ()) -> list[dict[str, Any]]:
        rows = await self.middleware.db.fetchall(f"SELECT * FROM vm_snapshot {where} ORDER BY id", params)
        return [dict(r) for r in rows]

    async def load_counts(self) -> None:
        """Snapshots per VM, for vm.query's snapshot_count."""
        rows = await self.middleware.db.fetchall("SELECT vm, COUNT(*) AS n FROM vm_snapshot GROUP BY vm")
        self.counts = {r["vm"]: r["n"] for r in rows}

    def entry_fields(self, vm_id: int) -> dict[str, Any]:
        """What vm.query shows of a VM's snapshots."""
        return {"snapshot_count": self.counts.get(vm_id, 0)}

    @api_method(params=[QUERY_FILTERS, QUERY_OPTIONS], roles=READ, result={
        "title": "result", "description": "Snapshots, one snapshot (get), or a count (count).",
        "anyOf": [{"type": "array", "items": S.ENTRY}, S.ENTRY, {"type": "integer"}]})
    async def query(self, filters: list[Any], options: dict[str, Any], *, app: Any = None) -> Any:
        """Snapshots of the VMs the caller may read, each with its parent and children (the tree)."""
        rows = snapshot_entries(await self._rows())
        if app is not None:
            rows = self.middleware.visible_rows(COLLECTION, READ, rows, app.credentials)
        return query_rows(rows, filters, options)

    @api_method(params=[S.ID, GET_OPTIONS], result=S.ENTRY, roles=READ)
    async def get_instance(self, id_: int, options: dict[str, Any], *, app: Any = None) -> dict[str, Any]:
        """The snapshot with this id."""
        rows = await self.query([["id", "=", id_]], {}, app=app)
        if not rows:
            raise InstanceNotFound(f"Snapshot {id_} does not exist")
        result: dict[str, Any] = query_rows(rows, [], {**options, "get": True})
        return result

    async def _snapshot(self, id_: int) -> dict[str, Any]:
        rows = await self._rows("WHERE id = ?", (id_,))
        if not rows:
            raise CallError(f"Snapshot {id_} does not exist", errno.ENOENT)
        return rows[0]

    # -- helpers ---------------------------------------------------------------------------------
    def _target(self, vm: Mapping[str, Any], tag: str, disks: list[dict[str, str]]) -> Target:
        record = VMRecord.from_row(vm)
        state_dir = os.path.join(real_roots(self.middleware.config.storage.roots)[0], STATE_DIR, vm["uuid"])
        return Target(record.domain_name, tag, tuple(d["path"] for d in disks),
                      self.vms.domain_context(record).nvram_path, state_dir)

    async def _run(self, job: Job, fn: Any, *args: Any) -> Outcome:
        outcome: Outcome = await self.vms.hypervisor.run(fn, *args)
        for line in outcome.log:
            job.log(line)
        return outcome

    async def _announce(self, vm_id: int, changed: set[int], added: int | None = None,
                        removed: int | None = None) -> None:
        await self.load_counts()
        entries = {e["id"]: e for e in snapshot_entries(await self._rows("WHERE vm = ?", (vm_id,)))}
        if added is not None:
            self.middleware.send_event(COLLECTION, "ADDED", id=added, fields=entries[added])
        if removed is not None:
            self.middleware.send_event(COLLECTION, "REMOVED", id=removed)
        for id_ in sorted(changed & set(entries)):
            self.middleware.send_event(COLLECTION, "CHANGED", id=id_, fields=entries[id_])
        if added is not None or removed is not None:
            self.middleware.send_event("vm.query", "CHANGED", id=vm_id, fields=await self.vms.get_instance(vm_id))

    async def forget_vm(self, vm: dict[str, Any]) -> None:
        """vm.delete: remove every snapshot of the (stopped) VM from its disks and its saved states; the rows go
        with the VM's row. Failures are logged: the VM is deleted anyway. vm.delete holds the VM's guard alone, so
        no snapshot operation runs meanwhile."""
        for snap in await self._rows("WHERE vm = ?", (vm["id"],)):
            try:
                await self.vms.hypervisor.run(self.engine.delete,
                                              self._target(vm, snap["tag"], json.loads(snap["disks"])))
            except CallError as e:
                logger.warning("VM %s: cannot remove snapshot %s: %s", vm["name"], snap["name"], e.errmsg)
        state_dir = self._target(vm, "", []).state_dir
        await asyncio.to_thread(shutil.rmtree, state_dir, True)
        self.counts.pop(vm["id"], None)

    # -- writing ---------------------------------------------------------------------------------
    @api_method(params=[S.CREATE], result=S.ENTRY, roles=WRITE,
                job=JobOptions(logs=True, description=lambda a: f"Snapshot {a[0]['name']} of VM {a[0]['vm']}"))
    async def create(self, data: dict[str, Any], *, job: Job) -> dict[str, Any]:
        """Take a snapshot of a VM's qcow2 disks (and, with memory, of a running guest's RAM): a child of the
        VM's current snapshot. A running guest is frozen or paused for the instant (the job log says which
        and for how long). Like revert and delete, it runs alone on the VM: calls such as vm.start issued meanwhile
        wait for it."""
        try:
            vm = await self.vms.get_instance(data["vm"])
        except InstanceNotFound:
            raise ValidationErrors([ValidationError("vm_snapshot_create.vm", f"VM {data['vm']} does not exist",
                                                    errno.ENOENT)]) from None
        job.set_progress(0, WAITING.format(name=vm["name"]))
        async with self.vms.guard(vm["id"]).exclusive():
            # As it is now: an update that ran while this waited may have changed its disks.
            vm = await self.vms.get_instance(vm["id"])
            refuse_template(vm, "take snapshots")
            existing = await self._rows("WHERE vm = ?", (vm["id"],))
            if any(r["name"] == data["name"] for r in existing):
                raise ValidationErrors([ValidationError("vm_snapshot_create.name",
                                                        f"VM {vm['name']} has a snapshot {data['name']} already",
                                                        errno.EEXIST)])
            disks = snapshot_disks(vm)
            tag = f"mw-{uuid.uuid4().hex[:16]}"
            job.set_progress(10, f"Taking snapshot {data['name']} of VM {vm['name']}")
            outcome = await self._run(job, self.engine.create, self._target(vm, tag, disks), data["memory"])
            memory = data["memory"] and outcome.vm_state != "STOPPED"
            parent = next((r["id"] for r in existing if r["current"]), None)

            def insert(db: sqlite3.Connection) -> int:
                db.execute("UPDATE vm_snapshot SET current = 0 WHERE vm = ?", (vm["id"],))
                cur = db.execute(
                    "INSERT INTO vm_snapshot (vm, name, description, parent, created, memory, vm_state, current, "
                    "tag, disks, size, memory_size, held_ms) VALUES (?, ?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?)",
                    (vm["id"], data["name"], data["description"], parent, time.time(), memory, outcome.vm_state,
                     tag, json.dumps(disks), outcome.size, outcome.memory_size, outcome.held_ms))
                return int(cur.lastrowid or 0)
            try:
                id_ = await self.middleware.db.transaction(insert)
            except BaseException:
                await self.vms.hypervisor.run(self.engine.delete, self._target(vm, tag, disks))
                raise
            await self._announce(vm["id"], {parent} if parent else set(), added=id_)
        return await self.get_instance(id_, {})

    @api_method(params=[S.ID], result=S.DELETED, roles=WRITE,
                job=JobOptions(logs=True, description=lambda a: f"Deleting snapshot {a[0]}"))
    async def delete(self, id_: int, *, job: Job) -> bool:
        """Delete a snapshot: its data leaves the disks (the other snapshots stay whole), its children become
        children of its parent, and when it was current its parent becomes current."""
        snap = await self._snapshot(id_)
        vm = await self.vms.get_instance(snap["vm"])
        job.set_progress(0, WAITING.format(name=vm["name"]))
        async with self.vms.guard(vm["id"]).exclusive():
            snap = await self._snapshot(id_)
            job.set_progress(10, f"Deleting snapshot {snap['name']} of VM {vm['name']}")
            await self._run(job, self.engine.delete, self._target(vm, snap["tag"], json.loads(snap["disks"])))

            def remove(db: sqlite3.Connection) -> None:
                db.execute("UPDATE vm_snapshot SET parent = ? WHERE parent = ?", (snap["parent"], id_))
                if snap["current"] and snap["parent"] is not None:
                    db.execute("UPDATE vm_snapshot SET current = 1 WHERE id = ?", (snap["parent"],))
                db.execute("DELETE FROM vm_snapshot WHERE id = ?", (id_,))
            children = {r["id"] for r in await self._rows("WHERE parent = ?", (id_,))}
            await self.middleware.db.transaction(remove)
            changed = children | ({snap["parent"]} if snap["parent"] is not None else set())
            await self._announce(vm["id"], changed, removed=id_)
        return True

    @api_method(params=[S.ID, S.REVERT_OPTIONS], result=S.ENTRY, roles=WRITE,
                job=JobOptions(logs=True, description=lambda a: f"Reverting to snapshot {a[0]}"))
    async def revert(self, id_: int, options: dict[str, Any], *, job: Job) -> dict[str, Any]:
        """Bring a VM back to a snapshot (any node of the tree): disks and firmware variables, and with RAM the
        guest resumes where it was; without RAM the VM is left stopped. Refused while the VM runs unless
        force; the snapshot becomes current."""
        snap = await self._snapshot(id_)
        vm = await self.vms.get_instance(snap["vm"])
        job.set_progress(0, WAITING.format(name=vm["name"]))
        async with self.vms.guard(vm["id"]).exclusive():
            vm = await self.vms.get_instance(snap["vm"])
            refuse_template(vm, "be reverted to a snapshot")
            if vm["status"]["state"] != VMState.STOPPED and not options["force"]:
                raise CallError(f"VM {vm['name']} is {vm['status']['state'].lower()}: stop it before reverting to "
                                f"snapshot {snap['name']}, or revert with force (what it did since is lost)",
                                errno.EBUSY)
            job.set_progress(10, f"Reverting VM {vm['name']} to snapshot {snap['name']}")
            memory_state = snap["vm_state"] if snap["memory"] else None
            await self._run(job, self.engine.revert, self._target(vm, snap["tag"], json.loads(snap["disks"])),
                            memory_state)
            if memory_state:
                await self.vms.hypervisor.wait_for(VMRecord.from_row(vm).domain_name,
                                                   {VMState.RUNNING, VMState.SUSPENDED}, 10)
            previous = {r["id"] for r in await self._rows("WHERE vm = ? AND current = 1", (vm["id"],))}

            def mark(db: sqlite3.Connection) -> None:
                db.execute("UPDATE vm_snapshot SET current = (id = ?) WHERE vm = ?", (id_, vm["id"]))
            await self.middleware.db.transaction(mark)
            await self._announce(vm["id"], previous | {id_})
        return await self.get_instance(id_, {})
