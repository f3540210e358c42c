"""vm.device.query/get_instance/create/update/delete: device rows written by this plugin (writes.py), the VM's
domain redefined in the same transaction."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any, AsyncContextManager, Callable

from middlewared.crud import CRUDService, crud_schemas
from middlewared.errors import CallError, InstanceNotFound, ValidationError, ValidationErrors
from middlewared.job import Job
from middlewared.plugins.vm.devices_api import DeviceChange
from middlewared.plugins.vm.guard import VMGuard
from middlewared.plugins.vm.model import VMState
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm.service import VMService
from middlewared.plugins.vm.template import in_use
from middlewared.plugins.vm_device import choices, data_api
from middlewared.plugins.vm_device import schemas as S
from middlewared.plugins.vm_device.manager import DeviceManager
from middlewared.service import JobOptions, api_method

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

# vm.device.delete's options that remove a device's storage, and the refusal for a device without such storage.
_STORAGE_OPTIONS = {
    "zvol": "The device is not a disk and has no zvol to destroy.",
    "raw_file": "Device is not of RAW type.",
}


CRUD = crud_schemas("vm.device", "VMDevice", "VM_DEVICE", S.DEVICE_ENTRY, S.DEVICE_CREATE, S.DEVICE_UPDATE,
                    (S.DELETE_OPTIONS,))


class VMDeviceService(CRUDService):
    """vm.device.*: VM devices."""

    namespace = "vm.device"
    verbose_name = "VMDevice"
    role_prefix = "VM_DEVICE"
    entry_schema = S.DEVICE_ENTRY

    def __init__(self, middleware: "Middleware") -> None:
        super().__init__(middleware)
        self.vms: VMRecords = middleware.service_of(VMService)
        self.manager = DeviceManager(self.vms, middleware.config.storage)
        # Installed as soon as both services exist: no VM is validated, defined or started without its devices.
        self.vms.devices = self.manager
        self.vms.delete_hooks = (*self.vms.delete_hooks, self.manager.discard_files_of)

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=CRUD.query, result=CRUD.query_result, roles=CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """Devices of the VMs the caller may see, matching the filters, in id order (display passwords masked)."""
        return await super().query(filters, options, app=app)

    @api_method(params=CRUD.get_instance, result=CRUD.entry, roles=CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One device by id, as vm.device.query shows it; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=CRUD.create, result=CRUD.entry, roles=CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Add a device to a VM: validated against the host and the VM's other devices, its volume or file created if
        asked, stored, and the VM's domain redefined (a running VM takes new devices only once stopped)."""
        async with self.vms.guard(data["vm"]).shared():
            return await super().create(data)

    @api_method(params=CRUD.update, result=CRUD.entry, roles=CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a device's attributes (merged over the stored ones) or order; a running VM takes only changes
        libvirt can make live (CDROM media)."""
        async with (await self._guard(id_)).shared():
            return await super().update(id_, data)

    @api_method(params=CRUD.delete, result=CRUD.deleted, roles=CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Remove a device (from a running VM only with force), and with zvol or raw_file its volume or file (not
        the volume of a template that has linked clones: their overlays need it)."""
        async with (await self._guard(id_)).shared():
            return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        devices = [d for r in (await self.vms.stored_vms()).values() for d in r["devices"]]
        return [self.manager.public(d) for d in sorted(devices, key=lambda d: d["id"])]

    async def row(self, id_: int) -> dict[str, Any] | None:
        device = await self.vms.stored_device(id_)
        return None if device is None else self.manager.public(device)

    async def _stored(self, id_: int) -> dict[str, Any]:
        device = await self.vms.stored_device(id_)
        if device is None:
            raise InstanceNotFound(f"{self.verbose_name} {id_} does not exist")
        return dict(device)

    async def _guard(self, id_: int) -> VMGuard:
        """The guard of a device's VM: device writes and copies overlap the VM's lifecycle calls, but wait for its
        snapshot operations, updates and delete (and hold those back)."""
        return self.vms.guard((await self._stored(id_))["vm"])

    def _vm_changed(self, vm_id: int, entry: dict[str, Any]) -> None:
        # The VM's `devices` changed: vm.query subscribers hear it as they would from vm.update.
        self.middleware.send_event("vm.query", "CHANGED", id=vm_id, fields=entry)

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Validate a device, create its volume or file if asked, store it and redefine the VM's domain."""
        vm_id = data["vm"]
        if vm_id not in await self.vms.stored_vms():
            raise ValidationErrors([ValidationError("vm_device_create.vm", f"VM {vm_id} does not exist",
                                                    errno.ENOENT)])
        change = DeviceChange("vm_device_create", {"attributes": data["attributes"], "order": data.get("order")})
        stored = await self.manager.writes.change(vm_id, [change])
        self._vm_changed(vm_id, await self.vms.get_instance(vm_id))
        return await self.get_instance(stored[0]["id"])

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a device (attributes merged over the stored ones); a running VM takes live changes only
        (CDROM media)."""
        device = await self._stored(id_)
        if data.get("vm", device["vm"]) != device["vm"]:
            raise ValidationErrors([ValidationError(
                "vm_device_update.vm", "A device cannot move to another VM; delete it and create it there")])
        change: dict[str, Any] = {"id": id_, "attributes": data.get("attributes") or {}}
        if "order" in data:
            change["order"] = data["order"]
        await self.manager.writes.change(device["vm"], [DeviceChange("vm_device_update", change)])
        self._vm_changed(device["vm"], await self.vms.get_instance(device["vm"]))
        return await self.get_instance(id_)

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete a device (force: even while the VM runs), and with zvol/raw_file its volume or file."""
        options = {"zvol": False, "raw_file": False, "force": False, **(options or {})}
        device = await self._stored(id_)
        typed = self.manager.types.typed(device["attributes"])
        force = options["force"]
        for option, refusal in _STORAGE_OPTIONS.items():
            if options[option] and (typed is None or typed.delete_option != option):
                raise CallError(refusal, errno.EINVAL)
        storage = typed if typed is not None and typed.delete_option and options[typed.delete_option] else None
        vm = await self.vms.get_instance(device["vm"])
        clones = self.vms.linked_clone_names(vm["id"]) if storage is not None else []
        if clones:
            raise in_use(vm, clones)
        if storage is not None and vm["status"]["state"] != VMState.STOPPED:
            raise CallError(f"VM {vm['name']} is running and uses this storage: stop it before deleting it",
                            errno.EBUSY)
        host = await self.manager.host()
        missing = await storage.storage_missing(host) if storage is not None else None
        if missing and not force:
            raise CallError(f"{missing} (delete with force to remove the device anyway)", errno.ENOENT)
        doomed = storage.storage_leftover() if storage is not None and not missing else None
        # Recorded before the row goes: a kill before the storage follows it removes the storage at the next start.
        async with self.manager.intents.making(*[doomed] if doomed else []):
            await self.manager.writes.change(device["vm"], [], [id_], force=force)
        if storage is not None and doomed is not None:
            try:
                await storage.remove_storage(host)
            except CallError as e:
                if not force:
                    raise CallError(f"Device {id_} was deleted, but not its storage: {e.errmsg}", e.errno) from e
            else:
                await self.manager.intents.forget([doomed.target])
        self._vm_changed(device["vm"], await self.vms.get_instance(device["vm"]))
        return True

    def scratch_dir(self, path: str) -> AsyncContextManager[None]:
        """A work directory made and removed around the body, also after a kill (for the OVA import)."""
        return self.manager.intents.scratch(path)

    async def import_volume(self, source: str, source_format: str | None, zvol_name: str, fmt: str,
                            progress: Callable[[float], None], log: Callable[[str], None] = lambda _: None
                            ) -> dict[str, Any]:
        """Convert an image file into a new volume (for vm.device.import_disk and the vm plugin's OVA import)."""
        return await data_api.import_volume(self, source, source_format, zvol_name, fmt, progress, log)

    # -- choices ---------------------------------------------------------------------------------------------
    @api_method(result=S.string_map("Address -> address."), roles=choices.ROLES)
    async def bind_choices(self) -> dict[str, str]:
        """Addresses a DISPLAY may listen on: the host's addresses, 0.0.0.0 and ::."""
        return await choices.bind_choices(self.manager)

    @api_method(result=S.string_map("Volume path -> \"<pool>/<volume>\"."), roles=choices.ROLES)
    async def disk_choices(self) -> dict[str, str]:
        """Volumes of the active storage pools that no DISK device uses."""
        return await choices.disk_choices(self.manager)

    @api_method(result=S.string_map("Pool name -> pool name (the configured pool first)."), roles=choices.ROLES)
    async def pool_choices(self) -> dict[str, str]:
        """Active storage pools a new DISK volume may be created in (zvol_name "<pool>/<volume>")."""
        return await choices.pool_choices(self.manager)

    @api_method(result=S.string_map("Name -> name."), roles=choices.ROLES)
    async def nic_attach_choices(self) -> dict[str, str]:
        """Host bridges, other host interfaces and active libvirt networks a NIC may attach to."""
        return await choices.nic_attach_choices(self.manager)

    @api_method(result=S.details_map("PCI address -> details.", S.PCI_DETAILS), roles=choices.ROLES)
    async def passthrough_device_choices(self) -> dict[str, dict[str, Any]]:
        """Host PCI devices with their IOMMU group, driver and whether they can be passed through."""
        return await choices.passthrough_device_choices(self.manager)

    @api_method(result=S.details_map("Node device name -> details.", S.USB_DETAILS), roles=choices.ROLES)
    async def usb_passthrough_choices(self) -> dict[str, dict[str, Any]]:
        """Host USB devices (libvirt node devices), and whether a running VM already uses each."""
        return await choices.usb_passthrough_choices(self.manager)

    @api_method(result=S.string_map("Model -> model."), roles=choices.ROLES)
    async def usb_controller_choices(self) -> dict[str, str]:
        """Models of the guest USB controller a USB device is plugged into."""
        return await choices.usb_controller_choices(self.manager)

    @api_method(result=S.string_map("I/O type -> I/O type."), roles=choices.ROLES)
    async def iotype_choices(self) -> dict[str, str]:
        """I/O backends of DISK and RAW devices."""
        return await choices.iotype_choices(self.manager)

    # -- data_api --------------------------------------------------------------------------------------------
    @api_method(params=[data_api.DEVICE_ID, data_api.RESIZE], result=S.DEVICE_ENTRY, roles=data_api.WRITE)
    async def resize(self, id_: int, options: dict[str, Any]) -> dict[str, Any]:
        """Grow a DISK volume or RAW file (never shrink it), after checking the free space where it lives; a
        running guest is told at once and sees the new size without a restart."""
        async with (await self._guard(id_)).shared():
            return await data_api.resize(self, id_, options)

    @api_method(params=[data_api.IMPORT], result=data_api.IMPORTED, roles=data_api.WRITE,
                job=JobOptions(abortable=True, logs=True, description=lambda a: f"Importing {a[0]['source']}"))
    async def import_disk(self, data: dict[str, Any], *, job: Job) -> dict[str, Any]:
        """Copy a disk image (qcow2, VMDK, VHDX, VDI or raw, under the storage roots) into a new volume of a
        storage pool, for a DISK device's zvol_name; the percentage is qemu-img's own. An abort or a failure
        leaves no volume behind."""
        return await data_api.import_disk(self, data, job=job)

    @api_method(params=[data_api.DEVICE_ID, data_api.EXPORT],
                result={"title": "result", "type": "string", "description": "Path of the copy."},
                roles=data_api.WRITE, job=JobOptions(abortable=True, description=lambda a: f"Exporting device {a[0]}"))
    async def export_disk(self, id_: int, options: dict[str, Any], *, job: Job) -> str:
        """Copy a stopped VM's DISK volume or RAW file to a new qcow2 or raw file under the storage roots, with
        qemu-img's percentage; an abort or a failure leaves no file behind."""
        async with (await self._guard(id_)).shared():
            return await data_api.export_disk(self, id_, options, job=job)

    @api_method(params=[data_api.VIRTUAL_SIZE],
                result={"title": "result", "type": "integer", "description": "Virtual size in bytes."},
                roles=data_api.READ)
    async def virtual_size(self, data: dict[str, Any]) -> int:
        """The size in bytes a guest sees of a disk image under the storage roots (format detected)."""
        return await data_api.virtual_size(self, data)
