"""The VM records held in memory: rows with their devices, loaded once, then kept current one VM at a time.

A write re-reads only the VM it changed, inside its own transaction, so that its cost does not grow with
the number of VMs (re-reading every row after each write made a create O(number of VMs)).
"""
from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping, Set
from typing import Any

from middlewared.plugins.vm import schemas as S
from middlewared.plugins.vm.model import device_order

BOOL_COLUMNS = frozenset(k for k, v in S.FIELDS.items() if v.get("type") == "boolean")

Record = dict[str, Any]
# The values a device's attributes hold that no other device may hold (see DeviceSupport.claims).
ClaimsOf = Callable[[Mapping[str, Any]], Iterable[Hashable]]


def no_claims(attributes: Mapping[str, Any]) -> Iterable[Hashable]:
    """The claims of a device when no device plugin says what they are."""
    return ()


def decode_vm(row: Mapping[str, Any]) -> Record:
    """A vm_vm row with SQLite's 0/1 turned into booleans."""
    return {k: (bool(v) if k in BOOL_COLUMNS else v) for k, v in row.items()}


def decode_device(row: Mapping[str, Any]) -> Record:
    """A vm_device row with its attributes parsed."""
    return {"id": row["id"], "vm": row["vm"], "order": row["order"], "attributes": json.loads(row["attributes"])}


def read_all(db: sqlite3.Connection) -> dict[int, Record]:
    """Every VM with its devices, by id in id order (blocking)."""
    records = {r["id"]: {**decode_vm(dict(r)), "devices": []} for r in db.execute("SELECT * FROM vm_vm ORDER BY id")}
    for d in db.execute("SELECT * FROM vm_device"):
        records[d["vm"]]["devices"].append(decode_device(dict(d)))
    for record in records.values():
        record["devices"].sort(key=device_order)
    return records


def read_one(db: sqlite3.Connection, vm_id: int) -> Record | None:
    """One VM with its devices, or None when there is no such row (blocking; indexed lookups only)."""
    row = db.execute("SELECT * FROM vm_vm WHERE id = ?", (vm_id,)).fetchone()
    if row is None:
        return None
    devices = [decode_device(dict(d)) for d in db.execute("SELECT * FROM vm_device WHERE vm = ?", (vm_id,))]
    return {**decode_vm(dict(row)), "devices": sorted(devices, key=device_order)}


class RecordCache:
    """VM records by id, their stored devices by id, VM ids by name, and devices by what they claim."""

    def __init__(self, records: dict[int, Record], claims_of: ClaimsOf = no_claims) -> None:
        self.records = records
        self.devices: dict[int, Record] = {}
        self.names: dict[str, int] = {r["name"]: i for i, r in records.items()}
        self._claims_of = claims_of
        # Claim -> {device id: VM id}: checks that a MAC, a port or a volume is free look one value up instead of
        # scanning every device of every VM.
        self.claims: dict[Hashable, dict[int, int]] = {}
        for record in records.values():
            self._add_devices(record)

    def _add_devices(self, record: Record) -> None:
        for device in record["devices"]:
            self.devices[device["id"]] = device
            for claim in self._claims_of(device["attributes"]):
                self.claims.setdefault(claim, {})[device["id"]] = record["id"]

    def _remove_devices(self, record: Record) -> None:
        for device in record["devices"]:
            self.devices.pop(device["id"], None)
            for claim in self._claims_of(device["attributes"]):
                holders = self.claims.get(claim, {})
                holders.pop(device["id"], None)
                if not holders:
                    self.claims.pop(claim, None)

    def put(self, vm_id: int, record: Record | None) -> None:
        """Replace one VM's entry by what its row now holds (None: the row is gone)."""
        old = self.records.pop(vm_id, None) if record is None else self.records.get(vm_id)
        if old is not None:
            self.names.pop(old["name"], None)
            self._remove_devices(old)
        if record is not None:
            # A new id is the highest yet (AUTOINCREMENT), so appending keeps the id order.
            self.records[vm_id] = record
            self.names[record["name"]] = vm_id
            self._add_devices(record)

    def other_names(self, vm_id: int | None) -> Set[str]:
        """The names of every VM but vm_id, as a live view (no copy)."""
        return _NamesExcept(self.names, vm_id)


class _NamesExcept(Set[str]):
    def __init__(self, names: Mapping[str, int], vm_id: int | None) -> None:
        self._names, self._vm_id = names, vm_id

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._names.get(name, self._vm_id) != self._vm_id

    def __iter__(self) -> Iterator[str]:
        return (n for n, i in self._names.items() if i != self._vm_id)

    def __len__(self) -> int:
        return len(self._names) - (self._vm_id in self._names.values())
