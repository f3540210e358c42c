"""The VM record cache: one VM replaced at a time, names as a live view, reads by index only."""
from __future__ import annotations

import sqlite3
from typing import Any

from middlewared.datastore import apply_migrations
from middlewared.datastore.migrations import MIGRATIONS
from middlewared.plugins.vm.record_cache import RecordCache, read_all, read_one


def _vm(vm_id: int, name: str, *device_ids: int) -> dict[str, Any]:
    return {"id": vm_id, "name": name, "devices": [{"id": d, "vm": vm_id, "attributes": {}} for d in device_ids]}


def test_put_adds_replaces_and_removes_one_vm() -> None:
    cache = RecordCache({1: _vm(1, "a", 10), 2: _vm(2, "b", 20, 21)})
    cache.put(3, _vm(3, "c"))
    cache.put(2, _vm(2, "b2", 21, 22))
    cache.put(1, None)
    assert list(cache.records) == [2, 3]
    assert cache.names == {"b2": 2, "c": 3} and sorted(cache.devices) == [21, 22]


def test_claims_follow_each_put() -> None:
    def vm(vm_id: int, *macs: str) -> dict[str, Any]:
        return {"id": vm_id, "name": f"vm{vm_id}", "devices": [
            {"id": vm_id * 10 + i, "vm": vm_id, "attributes": {"mac": m}} for i, m in enumerate(macs)]}
    cache = RecordCache({1: vm(1, "a", "b"), 2: vm(2, "b")}, lambda attributes: {attributes["mac"]})
    assert cache.claims == {"a": {10: 1}, "b": {11: 1, 20: 2}}
    cache.put(1, vm(1, "c"))
    assert cache.claims == {"b": {20: 2}, "c": {10: 1}}
    cache.put(2, None)
    assert cache.claims == {"c": {10: 1}} and sorted(cache.devices) == [10]


def test_other_names_leaves_out_the_vm_itself() -> None:
    cache = RecordCache({1: _vm(1, "a"), 2: _vm(2, "b")})
    others = cache.other_names(1)
    assert "b" in others and "a" not in others and "z" not in others and 3 not in others
    assert sorted(others) == ["b"] and len(others) == 1
    cache.put(3, _vm(3, "c"))
    assert "c" in others  # a view: later writes show
    assert sorted(cache.other_names(None)) == ["a", "b", "c"]


def test_read_one_matches_read_all() -> None:
    db = sqlite3.connect(":memory:", isolation_level=None)
    db.row_factory = sqlite3.Row
    apply_migrations(db, MIGRATIONS)
    columns = [r["name"] for r in db.execute("PRAGMA table_info(vm_vm)") if r["notnull"] and r["dflt_value"] is None
               and r["name"] != "id"]
    for vm_id in (1, 2):
        values = {c: f"{c}{vm_id}" for c in columns}
        db.execute(f"INSERT INTO vm_vm (id, {', '.join(columns)}) VALUES (?, {', '.join('?' * len(columns))})",
                   [vm_id, *values.values()])
    db.execute('INSERT INTO vm_device (vm, dtype, attributes, "order") VALUES (2, \'NIC\', \'{"dtype": "NIC"}\', 5)')
    db.execute('INSERT INTO vm_device (vm, dtype, attributes, "order") VALUES (2, \'CDROM\', \'{}\', NULL)')
    everything = read_all(db)
    assert [read_one(db, 1), read_one(db, 2)] == [everything[1], everything[2]]
    assert [d["attributes"] for d in everything[2]["devices"]] == [{"dtype": "NIC"}, {}]
    assert read_one(db, 3) is None
