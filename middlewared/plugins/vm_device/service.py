"""vm.device.query/get_instance/create/update/delete: devices stored and defined through the VM records."""
from __future__ import annotations

import errno
from typing import TYPE_CHECKING, Any

from middlewared.crud import CRUDService, crud_schemas
from middlewared.errors import CallError, InstanceNotFound, ValidationError, ValidationErrors
from middlewared.plugins.vm.devices_api import DeviceChange
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm.service import VMService
from middlewared.plugins.vm_device import schemas as S
from middlewared.plugins.vm_device.choices import DeviceChoicesMixin
from middlewared.plugins.vm_device.data_api import DeviceDataMixin
from middlewared.plugins.vm_device.manager import DeviceManager
from middlewared.service import api_method
from middlewared.plugins.vm.model import VMState

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

# vm.device.delete's options that remove a device's storage, and the refusal for a device without such storage.
_STORAGE_OPTIONS = {
    "zvol": "The device is not a disk and has no zvol to destroy.",
    "raw_file": "Device is not of RAW type.",
}


CRUD = crud_schemas("vm.device", "VMDevice", "VM_DEVICE", S.DEVICE_ENTRY, S.DEVICE_CREATE, S.DEVICE_UPDATE,
                    (S.DELETE_OPTIONS,))


class VMDeviceService(DeviceChoicesMixin, DeviceDataMixin, CRUDService):
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
        return await super().create(data)

    @api_method(params=CRUD.update, result=CRUD.entry, roles=CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a device's attributes (merged over the stored ones) or order; a running VM takes only changes
        libvirt can make live (CDROM media)."""
        return await super().update(id_, data)

    @api_method(params=CRUD.delete, result=CRUD.deleted, roles=CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Remove a device (from a running VM only with force), and with zvol or raw_file its volume or file."""
        return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        devices = [d for r in (await self.vms.stored_vms()).values() for d in r["devices"]]
        return [self.manager.public(d) for d in sorted(devices, key=lambda d: d["id"])]

    async def _stored(self, id_: int) -> dict[str, Any]:
        for record in (await self.vms.stored_vms()).values():
            for device in record["devices"]:
                if device["id"] == id_:
                    return dict(device)
        raise InstanceNotFound(f"{self.verbose_name} {id_} does not exist")

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
        stored = await self.vms.change_devices(vm_id, [change])
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
        await self.vms.change_devices(device["vm"], [DeviceChange("vm_device_update", change)])
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
        if storage is not None and vm["status"]["state"] != VMState.STOPPED:
            raise CallError(f"VM {vm['name']} is running and uses this storage: stop it before deleting it",
                            errno.EBUSY)
        host = await self.manager.host()
        missing = await storage.storage_missing(host) if storage is not None else None
        if missing and not force:
            raise CallError(f"{missing} (delete with force to remove the device anyway)", errno.ENOENT)
        await self.vms.change_devices(device["vm"], [], [id_], force=force)
        if storage is not None and not missing:
            try:
                await storage.remove_storage(host)
            except CallError as e:
                if not force:
                    raise CallError(f"Device {id_} was deleted, but not its storage: {e.errmsg}", e.errno) from e
        self._vm_changed(device["vm"], await self.vms.get_instance(device["vm"]))
        return True
