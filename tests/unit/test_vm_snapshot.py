"""vm.snapshot pure parts: which disks a snapshot covers (and which refuse it), the tree from stored rows."""
from __future__ import annotations

import json
from typing import Any

import pytest

from middlewared.errors import CallError
from middlewared.plugins.vm_snapshot.service import snapshot_entries, snapshot_disks


def vm(*attributes: dict[str, Any]) -> dict[str, Any]:
    return {"name": "v", "devices": [{"attributes": a} for a in attributes]}


def test_qcow2_disks_are_covered_cdroms_ignored() -> None:
    disks = snapshot_disks(vm({"dtype": "DISK", "zvol_name": "p/a", "path": "/m/p/a", "format": "qcow2"},
                              {"dtype": "CDROM", "path": "/m/iso"}))
    assert disks == [{"zvol_name": "p/a", "path": "/m/p/a"}]


def test_raw_files_and_raw_volumes_are_refused_by_name() -> None:
    with pytest.raises(CallError) as e:
        snapshot_disks(vm({"dtype": "RAW", "path": "/m/r.img"}, {"dtype": "DISK", "zvol_name": "p/old", "path": "x"}))
    assert "RAW disk /m/r.img" in e.value.errmsg and "DISK volume p/old is raw" in e.value.errmsg


def row(id_: int, parent: int | None, current: bool = False) -> dict[str, Any]:
    return {"id": id_, "vm": 1, "name": f"s{id_}", "description": "", "parent": parent, "current": int(current),
            "created": 1.5, "memory": 0, "vm_state": "STOPPED", "disks": json.dumps([{"zvol_name": "p/a"}]),
            "size": 10, "memory_size": 0, "held_ms": None}


def test_tree() -> None:
    entries = {e["id"]: e for e in snapshot_entries([row(1, None), row(2, 1), row(3, 1, True), row(4, 3)])}
    assert entries[1]["children"] == [2, 3] and entries[3]["children"] == [4] and entries[4]["children"] == []
    assert entries[3]["current"] and not entries[1]["current"]
    assert entries[1]["created"] == {"$date": 1500} and entries[1]["disks"] == ["p/a"]
