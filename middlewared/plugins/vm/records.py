"""vm.create/update/delete/query: VM records in SQLite, each write with its libvirt domain in one step."""
from __future__ import annotations

import errno
import json
import logging
import os
import sqlite3
import uuid
from typing import Any, Sequence

import libvirt
import psutil

from middlewared.crud import CRUDService
from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.vm import schemas as S
from middlewared.plugins.vm.devices_api import DeviceSupport, NoDevices
from middlewared.plugins.vm.domain_xml import domain_xml_string, ovmf_code_file, ovmf_vars_file
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.model import DomainContext, DomainType, VMRecord
from middlewared.plugins.vm.validation import HostFacts, numa_nodes, validate_vm

logger = logging.getLogger(__name__)

NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
VM_COLUMNS = tuple(S.FIELDS)
BOOL_COLUMNS = frozenset(k for k, v in S.FIELDS.items() if v.get("type") == "boolean")
OVMF_DIR = "/usr/share/OVMF"


def _decode_vm(row: dict[str, Any]) -> dict[str, Any]:
    return {k: (bool(v) if k in BOOL_COLUMNS else v) for k, v in row.items()}


def _decode_device(row: dict[str, Any]) -> dict[str, Any]:
    attributes = json.loads(row["attributes"])
    return {"id": row["id"], "vm": row["vm"], "order": row["order"], "attributes": attributes}


class VMRecords(CRUDService):
    """Records of VMs and the libvirt domains defined from them."""

    namespace = "vm"
    verbose_name = "VM"
    role_prefix = "VM"
    entry_schema = S.VM_ENTRY
    create_schema = S.VM_CREATE
    update_schema = S.VM_UPDATE
    delete_params = (S.DELETE_OPTIONS,)

    hypervisor: Hypervisor
    domain_type: DomainType = DomainType.QEMU
    devices: DeviceSupport = NoDevices()
    _cache: dict[int, dict[str, Any]] | None = None

    # -- reading ---------------------------------------------------------------------------------
    async def _records(self) -> dict[int, dict[str, Any]]:
        """VM rows with their device lists, cached until the next write."""
        if self._cache is None:
            ds = self.middleware.datastore
            assert ds is not None
            vms = await ds.fetchall("SELECT * FROM vm_vm ORDER BY id")
            devs = await ds.fetchall('SELECT * FROM vm_device ORDER BY vm, "order" IS NULL, "order", id')
            cache = {r["id"]: {**_decode_vm(r), "devices": []} for r in vms}
            for d in devs:
                cache[d["vm"]]["devices"].append(_decode_device(d))
            self._cache = cache
        return self._cache

    def _entry(self, record: dict[str, Any]) -> dict[str, Any]:
        status = self.hypervisor.status(f"{record['id']}_{record['name']}")
        return {**record, "status": status.as_dict(),
                "display_available": any(d["attributes"].get("dtype") == "DISPLAY" for d in record["devices"])}

    async def rows(self) -> list[dict[str, Any]]:
        return [self._entry(r) for r in (await self._records()).values()]

    def vm_record(self, entry: dict[str, Any]) -> VMRecord:
        """The typed record of an entry."""
        return VMRecord.from_row(entry)

    def on_domain_state(self, domain: str, domain_state: str | None) -> None:
        """Announce a libvirt state change of one of our domains as a vm.query CHANGED event."""
        vm_id, _, name = domain.partition("_")
        if not vm_id.isdigit() or self._cache is None:
            return
        record = self._cache.get(int(vm_id))
        if record is None or record["name"] != name:
            return
        entry = self._entry(record)
        self.middleware.send_event("vm.query", "CHANGED", id=record["id"], fields=entry,
                                   state=entry["status"]["state"])

    # -- XML -------------------------------------------------------------------------------------
    def domain_context(self, vm: VMRecord) -> DomainContext:
        """Host paths and domain type for the XML of one VM."""
        code = ovmf_code_file(vm, DomainContext(self.domain_type, ""))
        template = ovmf_vars_file(code)
        return DomainContext(
            domain_type=self.domain_type,
            nvram_path=os.path.join(NVRAM_DIR, f"{vm.domain_name}_VARS.fd"),
            nvram_template=os.path.join(OVMF_DIR, template) if template else None,
            serial_log_path=os.path.join(QEMU_LOG_DIR, f"{vm.domain_name}.console.log"),
        )

    def domain_xml(self, vm: VMRecord, devices: Sequence[dict[str, Any]]) -> str:
        """The domain XML of a VM and its devices."""
        return domain_xml_string(vm, self.domain_context(vm), self.devices.elements(vm, devices))

    # -- validation ------------------------------------------------------------------------------
    async def max_vcpus(self) -> int:
        """The vCPU limit validation enforces (the service answers it from libvirt's capabilities)."""
        return 255

    async def host_facts(self, exclude_id: int | None) -> HostFacts:
        """Host facts for validation (CPU models and vCPU limit from libvirt, names from the records)."""
        records = await self._records()
        names = frozenset(r["name"] for r in records.values() if r["id"] != exclude_id)

        def ask(conn: libvirt.virConnect) -> frozenset[str]:
            try:
                return frozenset(conn.getCPUModelNames("x86_64"))
            except libvirt.libvirtError:
                return frozenset()
        models = await self.hypervisor.run(ask)
        return HostFacts(psutil.cpu_count() or 1, numa_nodes(), await self.max_vcpus(), models, OVMF_DIR, names)

    # -- writing ---------------------------------------------------------------------------------
    def _conn(self) -> libvirt.virConnect:
        conn = self.hypervisor.conn
        if conn is None:
            raise CallError(f"libvirt at {self.hypervisor.uri} is not reachable", errno.ECONNREFUSED)
        return conn

    async def _write(self, fn: Any) -> Any:
        """Run a database transaction; libvirt errors inside roll it back and become CallError."""
        ds = self.middleware.datastore
        assert ds is not None
        try:
            return await ds.transaction(fn)
        except libvirt.libvirtError as e:
            raise CallError(e.get_error_message() or str(e), errno.EFAULT) from e
        finally:
            self._cache = None

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate, insert the record and its devices, and define the domain, all or nothing."""
        data = dict(data)
        devices_in = data.pop("devices", [])
        verrors = validate_vm(data, await self.host_facts(None), "vm_create")
        rows = await self.devices.normalize(data, devices_in, "vm_create.devices", verrors)
        verrors.check()
        data["uuid"] = data.get("uuid") or str(uuid.uuid4())
        conn = self._conn()

        def write(db: sqlite3.Connection) -> int:
            cols = ", ".join(VM_COLUMNS)
            cur = db.execute(f"INSERT INTO vm_vm ({cols}) VALUES ({', '.join('?' * len(VM_COLUMNS))})",
                             [data[c] for c in VM_COLUMNS])
            vm_id = int(cur.lastrowid or 0)
            stored = _insert_devices(db, vm_id, rows)
            conn.defineXML(self.domain_xml(VMRecord.from_row({**data, "id": vm_id}), stored))
            return vm_id
        vm_id = await self._write(write)
        return await self.get_instance(vm_id)

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change fields (and reconcile devices when given), redefining the domain."""
        old = await self.get_instance(id_)
        devices_in = data.get("devices")
        new = {**{k: old[k] for k in VM_COLUMNS}, **{k: v for k, v in data.items() if k != "devices"}}
        verrors = validate_vm(new, await self.host_facts(id_), "vm_update")
        running = old["status"]["state"] != "STOPPED"
        if new["name"] != old["name"] and running:
            verrors.add("vm_update.name", "Stop the VM before renaming it", errno.EBUSY)
        plan = None
        if devices_in is not None:
            plan = await self._device_plan(old, new, devices_in, verrors)
        verrors.check()
        conn = self._conn()
        old_rec, new_rec = VMRecord.from_row(old), VMRecord.from_row({**new, "id": id_})

        def write(db: sqlite3.Connection) -> None:
            sets = ", ".join(f"{c} = ?" for c in VM_COLUMNS)
            db.execute(f"UPDATE vm_vm SET {sets} WHERE id = ?", [new[c] for c in VM_COLUMNS] + [id_])
            devices = _apply_device_plan(db, id_, plan) if plan is not None else old["devices"]
            if new_rec.domain_name != old_rec.domain_name:
                _rename_domain(conn, old_rec, new_rec, self.domain_context)
            conn.defineXML(self.domain_xml(new_rec, devices))
        await self._write(write)
        return await self.get_instance(id_)

    async def _device_plan(self, old: dict[str, Any], new: dict[str, Any], devices_in: list[dict[str, Any]],
                           verrors: ValidationErrors) -> dict[str, Any]:
        existing = {d["id"]: d for d in old["devices"]}
        for index, dev in enumerate(devices_in):
            if "id" in dev and dev["id"] not in existing:
                verrors.add(f"vm_update.devices.{index}.id", f"VM {old['id']} has no device {dev['id']}",
                            errno.ENOENT)
        rows = await self.devices.normalize(new | {"id": old["id"]}, devices_in, "vm_update.devices", verrors)
        keep = {d["id"] for d in rows if d.get("id") is not None}
        return {"rows": rows, "remove": [i for i in existing if i not in keep]}

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Remove the record, its domain and NVRAM, and (zvols) its DISK volumes."""
        options = options or {}
        vm = await self.get_instance(id_)
        record = VMRecord.from_row(vm)
        if vm["status"]["state"] != "STOPPED":
            if not options.get("force"):
                raise CallError(f"VM {vm['name']} is running; stop it first or delete with force",
                                errno.EBUSY)
            await self.hypervisor.run(_destroy, record.domain_name)
        conn = self._conn()

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM vm_vm WHERE id = ?", (id_,))
            _undefine(conn, record.domain_name)
        await self._write(write)
        if options.get("zvols"):
            await self.devices.delete_volumes(vm["devices"])
        return True


def _insert_devices(db: sqlite3.Connection, vm_id: int, rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        cur = db.execute('INSERT INTO vm_device (vm, dtype, attributes, "order") VALUES (?, ?, ?, ?)',
                         (vm_id, row["attributes"]["dtype"], json.dumps(row["attributes"]), row.get("order")))
        out.append({**row, "id": cur.lastrowid, "vm": vm_id})
    return sorted(out, key=lambda d: (d.get("order") is None, d.get("order") or 0, d["id"]))


def _apply_device_plan(db: sqlite3.Connection, vm_id: int, plan: dict[str, Any]) -> list[dict[str, Any]]:
    for device_id in plan["remove"]:
        db.execute("DELETE FROM vm_device WHERE id = ? AND vm = ?", (device_id, vm_id))
    new_rows, out = [], []
    for row in plan["rows"]:
        if row.get("id") is None:
            new_rows.append(row)
            continue
        db.execute('UPDATE vm_device SET dtype = ?, attributes = ?, "order" = ? WHERE id = ? AND vm = ?',
                   (row["attributes"]["dtype"], json.dumps(row["attributes"]), row.get("order"), row["id"], vm_id))
        out.append({**row, "vm": vm_id})
    out.extend(_insert_devices(db, vm_id, new_rows))
    return sorted(out, key=lambda d: (d.get("order") is None, d.get("order") or 0, d["id"]))


def _destroy(conn: libvirt.virConnect, name: str) -> None:
    try:
        conn.lookupByName(name).destroy()
    except libvirt.libvirtError as e:
        if e.get_error_code() not in (libvirt.VIR_ERR_NO_DOMAIN, libvirt.VIR_ERR_OPERATION_INVALID):
            raise


def _undefine(conn: libvirt.virConnect, name: str) -> None:
    try:
        dom = conn.lookupByName(name)
    except libvirt.libvirtError as e:
        if e.get_error_code() == libvirt.VIR_ERR_NO_DOMAIN:
            return
        raise
    dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_TPM
                      | libvirt.VIR_DOMAIN_UNDEFINE_MANAGED_SAVE
                      | libvirt.VIR_DOMAIN_UNDEFINE_SNAPSHOTS_METADATA)


def _rename_domain(conn: libvirt.virConnect, old: VMRecord, new: VMRecord, context: Any) -> None:
    """Undefine the old domain name, keeping its NVRAM under the new name."""
    try:
        dom = conn.lookupByName(old.domain_name)
    except libvirt.libvirtError as e:
        if e.get_error_code() != libvirt.VIR_ERR_NO_DOMAIN:
            raise
    else:
        dom.undefineFlags(libvirt.VIR_DOMAIN_UNDEFINE_KEEP_NVRAM | libvirt.VIR_DOMAIN_UNDEFINE_KEEP_TPM)
    old_nvram, new_nvram = context(old).nvram_path, context(new).nvram_path
    if os.path.exists(old_nvram):
        os.rename(old_nvram, new_nvram)
