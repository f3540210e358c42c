"""vm.create/update/delete/query: VM records in SQLite, each write with its libvirt domain in one step."""
from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
import sqlite3
import uuid
from typing import Any, Awaitable, Callable, Hashable, Mapping, Sequence, TypeVar, cast

import libvirt
import psutil

from middlewared.crud import CRUDService
from middlewared.errors import CallError
from middlewared.plugins.vm import capabilities, template
from middlewared.plugins.vm import schemas as S
from middlewared.plugins.vm.devices_api import DeviceHost, DeviceRequest, DeviceSupport, StoreDevices, StoredDevices
from middlewared.plugins.vm.domain_xml import domain_xml_string, ovmf_code_file, ovmf_vars_file
from middlewared.plugins.vm.guard import VMGuards
from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm.model import DomainContext, DomainType, VMRecord, VMState, domain_name
from middlewared.plugins.vm.record_cache import RecordCache, no_claims, read_all, read_one
from middlewared.plugins.vm.validation import HostFacts, numa_nodes, validate_vm

logger = logging.getLogger(__name__)

T = TypeVar("T")

NVRAM_DIR = "/var/lib/libvirt/qemu/nvram"
QEMU_LOG_DIR = "/var/log/libvirt/qemu"
VM_COLUMNS = tuple(S.FIELDS)
OVMF_DIR = "/usr/share/OVMF"


def qemu_log_path(domain: str) -> str:
    """libvirt's QEMU log of a domain."""
    return os.path.join(QEMU_LOG_DIR, f"{domain}.log")


class VMRecords(CRUDService):
    """Records of VMs and the libvirt domains defined from them."""

    verbose_name = "VM"
    role_prefix = "VM"
    entry_schema = S.VM_ENTRY

    hypervisor: Hypervisor
    domain_type: DomainType = DomainType.QEMU
    # This daemon instance's UUID (from the database), written into every domain's <metadata>.
    instance: str | None = None
    # Installed by the device plugin when its service is made (before any plugin starts).
    _devices: DeviceSupport | None = None
    _cache: RecordCache | None = None
    # Fields other plugins add to each entry (snapshot counts), from the VM id.
    entry_extensions: tuple[Callable[[int], Mapping[str, Any]], ...] = ()
    # What other plugins remove with a VM (its snapshots), called with the entry once the domain is stopped.
    delete_hooks: tuple[Callable[[dict[str, Any]], Awaitable[None]], ...] = ()

    def __init__(self, middleware: Any) -> None:
        super().__init__(middleware)
        # Which operations of one VM may overlap (guard.py): lifecycle calls, updates, deletes, snapshots.
        self.guard = VMGuards()
        self.clone_sources = template.CloneSources()

    # -- reading ---------------------------------------------------------------------------------
    async def _records(self) -> dict[int, dict[str, Any]]:
        """VM rows with their device lists, loaded once and kept current by each write."""
        return (await self._record_cache()).records

    async def _record_cache(self) -> RecordCache:
        if self._cache is None:
            self.clone_sources.load(await self.middleware.db.fetchall("SELECT vm, source, linked FROM vm_clone"))
            records = await self.middleware.db.exclusively(read_all)
            self._cache = RecordCache(records, self._devices.claims if self._devices is not None else no_claims)
        return self._cache

    def linked_clone_names(self, template_id: int) -> list[str]:
        """The names of a template's linked clones (the cache is loaded)."""
        assert self._cache is not None
        return [self._cache.records[i]["name"] for i in self.clone_sources.linked_clones(template_id)
                if i in self._cache.records]

    @property
    def devices(self) -> DeviceSupport:
        """The device plugin's side of VMs: device validation, resources and XML."""
        if self._devices is None:
            raise CallError("Device types are not available: the vm_device plugin is not loaded", errno.ENODEV)
        return self._devices

    @devices.setter
    def devices(self, support: DeviceSupport) -> None:
        self._devices = support

    async def stored_vms(self) -> dict[int, dict[str, Any]]:
        """VM rows with their stored devices (secrets in clear: for internal use only)."""
        return await self._records()

    async def stored_device(self, device_id: int) -> dict[str, Any] | None:
        """One stored device row by id (secrets in clear), or None."""
        return (await self._record_cache()).devices.get(device_id)

    async def device_claims(self) -> Mapping[Hashable, Mapping[int, int]]:
        """Each claim of a stored device (DeviceSupport.claims) -> {device id: VM id} of the devices holding it; a
        live view of the records, not to be changed."""
        return (await self._record_cache()).claims

    def _entry(self, record: dict[str, Any]) -> dict[str, Any]:
        status = self.hypervisor.status(domain_name(record["id"], record["name"]))
        devices = [self.devices.public(d) for d in record["devices"]]
        entry = {**record, "devices": devices, "status": status.as_dict(),
                 "display_available": any(d["attributes"].get("dtype") == "DISPLAY" for d in devices)}
        entry.update(self.clone_sources.entry_fields(record["id"]))
        for extension in self.entry_extensions:
            entry.update(extension(record["id"]))
        return entry

    async def rows(self) -> list[dict[str, Any]]:
        return [self._entry(r) for r in (await self._records()).values()]

    async def active_guests(self) -> list[tuple[int, int | None]]:
        """(memory MiB, QEMU pid) of every running or suspended VM, straight from the caches: a look at the active
        domains, not at every VM (vm.start checks memory with it)."""
        records = await self._records()
        out = []
        for domain in sorted(self.hypervisor.active):
            vm_id, _, name = domain.partition("_")
            record = records.get(int(vm_id)) if vm_id.isdigit() else None
            if record is None or record["name"] != name:
                continue  # another daemon's domain, or virsh's
            # A suspended guest keeps its memory and grows again on resume: it counts like a running one.
            out.append((int(record["memory"]), self.hypervisor.status(domain).pid))
        return out

    async def row(self, id_: int) -> dict[str, Any] | None:
        record = (await self._records()).get(id_)
        return None if record is None else self._entry(record)

    def vm_record(self, entry: dict[str, Any]) -> VMRecord:
        """The typed record of an entry."""
        return VMRecord.from_row(entry)

    def on_domain_state(self, domain: str, domain_state: str | None) -> None:
        """Announce a libvirt state change of one of our domains as a vm.query CHANGED event."""
        vm_id, _, name = domain.partition("_")
        if not vm_id.isdigit() or self._cache is None:
            return
        record = self._cache.records.get(int(vm_id))
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
            instance=self.instance,
        )

    def domain_xml(self, vm: VMRecord, devices: Sequence[Mapping[str, Any]], host: DeviceHost) -> str:
        """The domain XML of a VM from its record, its stored device rows (secrets in clear) and the host facts
        taken in the same request: a pure function of these."""
        return domain_xml_string(vm, self.domain_context(vm), self.devices.elements(devices, host))

    def stored_domain_xml(self, db: sqlite3.Connection, vm_id: int, host: DeviceHost) -> str:
        """The domain XML of a stored VM, read with `db` (inside the database thread)."""
        record = read_one(db, vm_id)
        assert record is not None
        return self.domain_xml(VMRecord.from_row(record), record["devices"], host)

    # -- validation ------------------------------------------------------------------------------
    async def host_facts(self, exclude_id: int | None) -> HostFacts:
        """Host facts for validation (CPU models and vCPU limit from libvirt, names from the records)."""
        names = (await self._record_cache()).other_names(exclude_id)
        hv = self.hypervisor
        return HostFacts(psutil.cpu_count() or 1, numa_nodes(), await capabilities.max_vcpus(hv),
                         await capabilities.cpu_models(hv), OVMF_DIR, names)

    # -- writing ---------------------------------------------------------------------------------
    def _conn(self) -> libvirt.virConnect:
        conn = self.hypervisor.conn
        if conn is None:
            raise CallError(f"libvirt at {self.hypervisor.uri} is not reachable", errno.ECONNREFUSED)
        return conn

    async def _write(self, fn: Callable[[sqlite3.Connection], T], vm_id: int | None = None) -> T:
        """Run a database transaction; libvirt errors inside roll it back and become CallError.

        The write changes one VM: vm_id, or (a create) the id fn returns. The same transaction re-reads
        that VM for the cache, which thus never shows another state than the database's.
        """
        def run(db: sqlite3.Connection) -> tuple[T, int, dict[str, Any] | None]:
            result = fn(db)
            touched = vm_id if vm_id is not None else cast(int, result)
            return result, touched, read_one(db, touched)
        try:
            result, touched, record = await self.middleware.db.transaction(run)
        except libvirt.libvirtError as e:
            raise CallError(e.get_error_message() or str(e), errno.EFAULT) from e
        if self._cache is not None:
            self._cache.put(touched, record)
        return result

    async def redefine(self, vm: VMRecord, store: StoreDevices) -> None:
        """What the device plugin asks of the VM service: run its store step inside vm's transaction and define
        the domain from the devices it returns, all or nothing (libvirt errors become CallError)."""
        conn = self._conn()

        def write(db: sqlite3.Connection) -> None:
            stored = store(db, conn, vm)
            conn.defineXML(self.domain_xml(vm, stored.devices, stored.host))
        await self._write(write, vm.id)

    async def do_create(self, data: dict[str, Any], clone_of: tuple[int, bool] | None = None) -> dict[str, Any]:
        """Validate, insert the record and its devices, and define the domain, all or nothing. A clone names its
        source VM and whether it is linked, stored in the same transaction."""
        data = dict(data)
        devices_in = data.pop("devices", [])
        verrors = validate_vm(data, await self.host_facts(None), "vm_create")

        async def commit(store: StoreDevices) -> int:
            data["uuid"] = data.get("uuid") or str(uuid.uuid4())
            conn = self._conn()

            def write(db: sqlite3.Connection) -> int:
                cols = ", ".join(VM_COLUMNS)
                try:
                    cur = db.execute(f"INSERT INTO vm_vm ({cols}) VALUES ({', '.join('?' * len(VM_COLUMNS))})",
                                     [data[c] for c in VM_COLUMNS])
                except sqlite3.IntegrityError as e:
                    # A create of the same name (or uuid) committed after this one was validated.
                    unique = "name" if "vm_vm.name" in str(e) else "uuid"
                    verrors.add(f"vm_create.{unique}", f"This {unique} already exists.", errno.EEXIST)
                    raise verrors from None
                record = VMRecord.from_row({**data, "id": int(cur.lastrowid or 0)})
                stored = store(db, conn, record)
                conn.defineXML(self.domain_xml(record, stored.devices, stored.host))
                if clone_of is not None:
                    template.record_clone(db, record.id, *clone_of)
                return record.id
            return await self._write(write)

        async def read() -> DeviceRequest:
            return DeviceRequest(data, [], devices_in, verrors, new=True)
        if devices_in:
            vm_id = await self.devices.write(read, commit)
        else:
            # Without devices there is nothing for the device plugin to check (no MAC or port to keep unique, no
            # need to look at other VMs): such creates take no device lock, so that their transactions follow one
            # another in the database thread without waiting for the event loop in between.
            verrors.check()
            vm_id = await commit(_no_devices)
        if clone_of is not None:
            self.clone_sources.add(vm_id, *clone_of)
        entry = await self.get_instance(vm_id)
        if entry["template"]:
            await _set_base_mode(entry, True)
        return entry

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change fields (and reconcile devices when given), redefining the domain."""
        state: dict[str, Any] = {}

        async def read() -> DeviceRequest:
            # Under the device lock: the VM and its devices read here are current when the commit writes.
            old = state["old"] = await self.get_instance(id_)
            current = list((await self._records())[id_]["devices"])
            new = state["new"] = {**{k: old[k] for k in VM_COLUMNS}, **{k: v for k, v in data.items()
                                                                         if k != "devices"}}
            verrors = validate_vm(new, await self.host_facts(id_), "vm_update")
            if new["name"] != old["name"] and old["status"]["state"] != VMState.STOPPED:
                verrors.add("vm_update.name", "Stop the VM before renaming it", errno.EBUSY)
            problem = template.change_problem(old, new["template"], self.linked_clone_names(id_))
            if problem:
                verrors.add("vm_update.template", problem, errno.EBUSY)
            return DeviceRequest({**new, "id": id_, "status": old["status"]}, current, data.get("devices"), verrors)

        async def commit(store: StoreDevices) -> None:
            new = state["new"]
            conn = self._conn()
            old_rec, new_rec = VMRecord.from_row(state["old"]), VMRecord.from_row({**new, "id": id_})

            def write(db: sqlite3.Connection) -> None:
                sets = ", ".join(f"{c} = ?" for c in VM_COLUMNS)
                db.execute(f"UPDATE vm_vm SET {sets} WHERE id = ?", [new[c] for c in VM_COLUMNS] + [id_])
                stored = store(db, conn, old_rec)
                if new_rec.domain_name != old_rec.domain_name:
                    _rename_domain(conn, old_rec, new_rec, self.domain_context)
                conn.defineXML(self.domain_xml(new_rec, stored.devices, stored.host))
            await self._write(write, id_)
        await self.devices.write(read, commit)
        entry = await self.get_instance(id_)
        if entry["template"] != state["old"]["template"]:
            await _set_base_mode(entry, entry["template"])
        return entry

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Remove the record, its domain and NVRAM, and (zvols) its DISK volumes."""
        options = options or {}
        vm = await self.get_instance(id_)
        record = VMRecord.from_row(vm)
        clones = self.linked_clone_names(id_)
        if clones:
            raise template.in_use(vm, clones)
        if vm["status"]["state"] != VMState.STOPPED:
            if not options.get("force"):
                raise CallError(f"VM {vm['name']} is running; stop it first or delete with force",
                                errno.EBUSY)
            await self.hypervisor.run(_destroy, record.domain_name)
        for hook in self.delete_hooks:
            await hook(vm)
        conn = self._conn()

        def write(db: sqlite3.Connection) -> None:
            db.execute("DELETE FROM vm_vm WHERE id = ?", (id_,))
            _undefine(conn, record.domain_name)
        async with self.devices.removing_volumes(vm["devices"] if options.get("zvols") else []):
            await self._write(write, id_)
        self.clone_sources.forget(id_)
        # The domain's logs go with it: a later VM must not inherit them.
        for path in (qemu_log_path(record.domain_name),
                     self.domain_context(record).serial_log_path):
            if path:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
        if options.get("zvols"):
            await self.devices.delete_volumes(vm["devices"])
        return True


async def _set_base_mode(vm: Mapping[str, Any], base: bool) -> None:
    """Make a template's DISK volumes read-only bases, or writable again when it stops being a template."""
    paths = template.disk_paths(vm["devices"])
    await asyncio.to_thread(template.set_mode, paths, template.BASE_MODE if base else template.VOLUME_MODE)


def _no_devices(db: sqlite3.Connection, conn: libvirt.virConnect, vm: VMRecord) -> StoredDevices:
    """The store step of a VM created without devices: nothing to store, and the XML needs no host facts."""
    return StoredDevices([], DeviceHost())


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
