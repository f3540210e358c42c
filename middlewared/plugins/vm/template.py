"""Templates (as Proxmox's `qm template`) and clone sources: the rules that keep a template's volumes whole under
its linked clones, and where each clone came from (vm_clone rows), for vm.query."""
from __future__ import annotations

import errno
import os
import sqlite3
from typing import Any, Iterable, Mapping, Sequence

from middlewared.errors import CallError
from middlewared.plugins.vm.model import VMState

# A template's DISK volumes are the backing files of its linked clones' overlays: QEMU reads them, nothing may
# write them again. The mode keeps a guest's QEMU (never root) from opening one for writing; the API refuses the
# rest (starting the template, snapshots of it, growing its disks).
BASE_MODE = 0o444
# The mode libvirt gives a new volume of a dir pool: what a template's volumes get back when it stops being one.
VOLUME_MODE = 0o600


class CloneSources:
    """Each clone's source VM and whether it is linked, as the vm_clone rows say (kept in step with them)."""

    def __init__(self) -> None:
        self._rows: dict[int, tuple[int | None, bool]] = {}

    def load(self, rows: Iterable[Mapping[str, Any]]) -> None:
        self._rows = {r["vm"]: (r["source"], bool(r["linked"])) for r in rows}

    def add(self, vm_id: int, source: int, linked: bool) -> None:
        self._rows[vm_id] = (source, linked)

    def forget(self, vm_id: int) -> None:
        """A VM was deleted: its row goes, and its clones' source becomes null (ON DELETE SET NULL)."""
        self._rows.pop(vm_id, None)
        for clone, (source, linked) in list(self._rows.items()):
            if source == vm_id:
                self._rows[clone] = (None, linked)

    def entry_fields(self, vm_id: int) -> dict[str, Any]:
        """What vm.query shows of where a VM came from."""
        source, linked = self._rows.get(vm_id, (None, False))
        return {"cloned_from": source, "linked_clone": linked}

    def linked_clones(self, template_id: int) -> list[int]:
        """The ids of a template's linked clones."""
        return sorted(vm for vm, (source, linked) in self._rows.items() if linked and source == template_id)


def record_clone(db: sqlite3.Connection, vm_id: int, source: int, linked: bool) -> None:
    """Store where a clone came from, inside the clone's create transaction (blocking)."""
    db.execute("INSERT INTO vm_clone (vm, source, linked) VALUES (?, ?, ?)", (vm_id, source, linked))


def change_problem(vm: Mapping[str, Any], template: bool, clones: Sequence[str]) -> str | None:
    """Why a VM's template flag cannot become `template` now (None: it can)."""
    if template == vm["template"]:
        return None
    if vm["status"]["state"] != VMState.STOPPED:
        return f"Stop VM {vm['name']} before {'making it a template' if template else 'changing its template flag'}"
    if template and vm.get("snapshot_count"):
        return (f"VM {vm['name']} has {vm['snapshot_count']} snapshots: delete them first (a template's volumes "
                "are the bases of its linked clones, which a revert would change under them)")
    if not template and clones:
        return f"Template {vm['name']} has linked clones ({', '.join(clones)}): delete them first"
    return None


def in_use(vm: Mapping[str, Any], clones: Sequence[str]) -> CallError:
    """The refusal to delete a template whose volumes back linked clones."""
    return CallError(f"Template {vm['name']} has linked clones ({', '.join(clones)}) whose disks are overlays on its "
                     "volumes: delete them first", errno.EBUSY)


def refuse_template(vm: Mapping[str, Any], what: str) -> None:
    """CallError EINVAL when vm is a template: `what` (start, snapshot) is not for templates."""
    if vm["template"]:
        raise CallError(f"VM {vm['name']} is a template, which cannot {what}: its DISK volumes are the read-only "
                        "bases of linked clones (clone it with vm.clone, or set template to false)", errno.EINVAL)


def disk_paths(devices: Iterable[Mapping[str, Any]]) -> list[str]:
    """The volume paths of a VM's DISK devices."""
    return [str(d["attributes"]["path"]) for d in devices
            if d["attributes"].get("dtype") == "DISK" and d["attributes"].get("path")]


def set_mode(paths: Iterable[str], mode: int) -> None:
    """chmod each volume that still exists (blocking)."""
    for path in paths:
        try:
            os.chmod(path, mode)
        except FileNotFoundError:
            pass
