"""vm.*: the vm service. Each method is visible here with its schemas and roles, one step from the module that
holds its logic (records, lifecycle, info, console, memory, clone, stats, OVA import, serial console)."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from middlewared.crud import crud_schemas
from middlewared.job import Job
from middlewared.plugins.vm import (
    clone, console, guest_agent, info, lifecycle, memory, ova_api, serial_api, stats_api,
)
from middlewared.plugins.vm import lifecycle_schemas as L
from middlewared.plugins.vm import schemas as S
from middlewared.plugins.vm import web_console as W
from middlewared.plugins.vm.records import VMRecords
from middlewared.plugins.vm.serial_console import SerialHub
from middlewared.plugins.vm.web_console_http import WebConsole
from middlewared.service import NULL_RESULT, JobOptions, api_method

if TYPE_CHECKING:
    from middlewared.api.rpc import RpcConnection
    from middlewared.middleware import Middleware


CRUD = crud_schemas("vm", "VM", "VM", S.VM_ENTRY, S.VM_CREATE, S.VM_UPDATE, (S.DELETE_OPTIONS,))


class VMService(VMRecords):
    """vm.*: virtual machines (their records, libvirt domains and host facts: see VMRecords)."""

    namespace = "vm"

    # Installed by the plugin's setup.
    stats_sampler: stats_api.Sampler
    serial_consoles: SerialHub

    def __init__(self, middleware: "Middleware") -> None:
        super().__init__(middleware)
        # Tasks the plugin runs beside the API (autostart), cancelled at teardown.
        self.background: set[asyncio.Task[None]] = set()
        # The web console bridges of this daemon: the HTTP side opens and closes them, the API reports them.
        self.web_consoles = W.ConsoleTable()
        self.console_http = WebConsole(middleware, self.web_consoles, self.get_instance)

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=CRUD.query, result=CRUD.query_result, roles=CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """VMs matching the filters, each with its live libvirt status, its devices (display passwords masked) and
        whether it has a display."""
        return await super().query(filters, options, app=app)

    @api_method(params=CRUD.get_instance, result=CRUD.entry, roles=CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One VM by id, as vm.query shows it; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=CRUD.create, result=CRUD.entry, roles=CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a VM and its devices: validated against the host, then stored and defined in libvirt in one step (a
        failure leaves no row, domain or new volume behind)."""
        return await super().create(data)

    @api_method(params=CRUD.update, result=CRUD.entry, roles=CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a VM's fields and, when devices is given, its devices (listed ones kept or changed, new ones
        created, missing ones removed); the domain is redefined (a running VM cannot be renamed). Runs alone on the
        VM: after its lifecycle calls and snapshot operations under way, before those issued meanwhile."""
        async with self.guard(id_).exclusive():
            return await super().update(id_, data)

    @api_method(params=CRUD.delete, result=CRUD.deleted, roles=CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete a VM (a running one only with force): its row, libvirt domain, NVRAM and logs, and with zvols the
        volumes of its DISK devices."""
        async with self.guard(id_).exclusive():
            deleted = await super().delete(id_, options)
        # Said here rather than left to the domain's undefine event: that event can be read while the row's
        # removal is not yet committed, and the console would then look like one of a VM that merely stopped.
        self.serial_consoles.end(id_, "the VM was deleted")
        return deleted

    # -- lifecycle -------------------------------------------------------------------------------------------
    @api_method(params=[L.ID, L.START_OPTIONS], result=NULL_RESULT, roles=lifecycle.WRITE)
    async def start(self, id_: int, options: dict[str, Any]) -> None:
        """Start a stopped VM: check memory and devices, redefine its domain from the record, boot it. Waits while
        a snapshot operation, an update or a delete of the VM runs."""
        async with self.guard(id_).shared():
            await lifecycle.start(self, id_, options)

    @api_method(params=[L.ID, L.STOP_OPTIONS], result=NULL_RESULT, roles=lifecycle.WRITE,
                job=JobOptions(lock=lifecycle.vm_lock, description=lambda a: f"Stopping VM {a[0]}"))
    async def stop(self, id_: int, options: dict[str, Any], *, job: Job) -> None:
        """Stop a VM: ACPI shutdown waiting up to shutdown_timeout, or at once with force. Waits while a snapshot
        operation, an update or a delete of the VM runs."""
        async with self.guard(id_).shared():
            await lifecycle.stop(self, id_, options, job=job)

    @api_method(params=[L.ID], result=NULL_RESULT, roles=lifecycle.WRITE)
    async def poweroff(self, id_: int) -> None:
        """Power a VM off at once, without asking the guest."""
        async with self.guard(id_).shared():
            await lifecycle.poweroff(self, id_)

    @api_method(params=[L.ID], result=NULL_RESULT, roles=lifecycle.WRITE,
                job=JobOptions(lock=lifecycle.vm_lock, description=lambda a: f"Restarting VM {a[0]}"))
    async def restart(self, id_: int, *, job: Job) -> None:
        """Stop a VM (ACPI, powered off after shutdown_timeout) and start it again."""
        async with self.guard(id_).shared():
            await lifecycle.restart(self, id_, job=job)

    @api_method(params=[L.ID], result=NULL_RESULT, roles=lifecycle.WRITE)
    async def suspend(self, id_: int) -> None:
        """Pause a running VM (its memory stays allocated)."""
        async with self.guard(id_).shared():
            await lifecycle.suspend(self, id_)

    @api_method(params=[L.ID], result=NULL_RESULT, roles=lifecycle.WRITE)
    async def resume(self, id_: int) -> None:
        """Resume a suspended VM."""
        async with self.guard(id_).shared():
            await lifecycle.resume(self, id_)

    @api_method(params=[L.ID], result=L.STATUS_RESULT, roles=lifecycle.READ)
    async def status(self, id_: int) -> dict[str, Any]:
        """The VM's live state: {state, pid, domain_state, started_at}."""
        return await lifecycle.status(self, id_)

    # -- info ------------------------------------------------------------------------------------------------
    @api_method(result=info.RANDOM_MAC_RESULT, roles=info.READ)
    async def random_mac(self) -> str:
        """A random MAC address in the 00:a0:98 prefix."""
        return await info.random_mac(self)

    @api_method(result=info.PORT_WIZARD_RESULT, roles=info.READ)
    async def port_wizard(self) -> dict[str, int]:
        """The two lowest ports from 5900 used by no DISPLAY device and no listening socket."""
        return await info.port_wizard(self)

    @api_method(result=info.MAX_VCPUS_RESULT, roles=info.READ)
    async def maximum_supported_vcpus(self) -> int:
        """Most vCPUs a guest may have: the default machine type's limit as libvirt reports it."""
        return await info.maximum_supported_vcpus(self)

    @api_method(result=info.VIRT_RESULT, roles=info.READ)
    async def virtualization_details(self) -> dict[str, Any]:
        """Whether QEMU can really run guests with KVM here (a probe guest is run once), and why not."""
        return await info.virtualization_details(self)

    @api_method(result=info.BOOTLOADER_RESULT, roles=info.READ)
    async def bootloader_options(self) -> dict[str, str]:
        """Bootloader choices: UEFI, or legacy BIOS (UEFI_CSM)."""
        return await info.bootloader_options(self)

    @api_method(result=info.CHOICES_RESULT, roles=info.CHOICES_READ)
    async def bootloader_ovmf_choices(self) -> dict[str, str]:
        """OVMF code files (OVMF_CODE*.fd) installed on the host."""
        return await info.bootloader_ovmf_choices(self)

    @api_method(result=info.CHOICES_RESULT, roles=info.CHOICES_READ)
    async def cpu_model_choices(self) -> dict[str, str]:
        """CPU models libvirt knows for the host architecture (for cpu_mode CUSTOM)."""
        return await info.cpu_model_choices(self)

    @api_method(result=info.CHOICES_RESULT, roles=info.CHOICES_READ)
    async def resolution_choices(self) -> dict[str, str]:
        """Screen resolutions of DISPLAY devices."""
        return await info.resolution_choices(self)

    @api_method(result=info.ARCH_RESULT, roles=info.CHOICES_READ)
    async def guest_architecture_and_machine_choices(self) -> dict[str, list[str]]:
        """Guest architectures libvirt can run here, each with its machine types."""
        return await info.guest_architecture_and_machine_choices(self)

    @api_method(params=[info.VM_ID], result=info.DISPLAY_DEVICES_RESULT, roles=info.READ)
    async def get_display_devices(self, id_: int) -> list[dict[str, Any]]:
        """The VM's DISPLAY devices, with password_configured instead of the password."""
        return await info.get_display_devices(self, id_)

    @api_method(params=[info.VM_ID, info.HOST, info.WEB_URI_OPTIONS], result=info.WEB_URI_RESULT, roles=info.READ)
    async def get_display_web_uri(self, id_: int, host: str, options: dict[str, Any], *,
                                  app: "RpcConnection | None" = None) -> dict[str, str | None]:
        """The web (spice-html5) console URI of a running VM's web-enabled SPICE display.

        The URI carries a single-use ticket valid for 5 minutes, and the display's password only for
        callers who may change the VM (VM_WRITE on it); others type the password in the page.
        """
        return await info.get_display_web_uri(self, id_, host, options, app=app)

    @api_method(params=[info.VM_ID], result=W.CONNECTIONS_RESULT, roles=info.READ)
    async def get_display_connections(self, id_: int) -> dict[str, Any]:
        """The VM's web console bridges: how many are open, were opened and closed, and the bytes relayed."""
        return await info.get_display_connections(self, self.web_consoles, id_)

    @api_method(params=[info.VM_ID], result=NULL_RESULT, roles=info.READ, job=JobOptions(pipes=("output",)))
    async def log_file_download(self, id_: int, *, job: Job) -> None:
        """Stream the VM's QEMU log (empty if none) into the job's output pipe; fetch it with core.download."""
        await info.log_file_download(self, id_, job=job)

    @api_method(params=[info.VM_ID], result=info.LOG_PATH_RESULT, roles=info.READ)
    async def log_file_path(self, id_: int) -> str | None:
        """Path of the VM's QEMU log, or null when it does not exist."""
        return await info.log_file_path(self, id_)

    # -- console ---------------------------------------------------------------------------------------------
    @api_method(params=[L.ID, console.CONSOLE_LOG_OPTIONS], result=console.CONSOLE_LOG_RESULT, roles=("VM_READ",))
    async def console_log(self, id_: int, options: dict[str, Any]) -> str:
        """What the VM's guest printed on its serial console (firmware, boot loader, kernel, getty), across
        boots: every domain's serial port is logged to a file by libvirt's virtlogd."""
        return await console.console_log(self, id_, options)

    # -- memory ----------------------------------------------------------------------------------------------
    @api_method(params=[memory.OVERCOMMIT], result=memory.AVAILABLE_RESULT, roles=("VM_READ",))
    async def get_available_memory(self, overcommit: bool = False) -> int:
        """Bytes a new guest can get: 90% of MemAvailable, less what running guests may still grow into."""
        return await memory.get_available_memory(self, overcommit)

    @api_method(result=memory.IN_USE_RESULT, roles=("VM_READ",))
    async def get_vmemory_in_use(self) -> dict[str, int]:
        """Configured memory of running VMs (RNP, RPRD) and of stopped autostart VMs (PRD), in bytes."""
        return await memory.get_vmemory_in_use(self)

    # -- clone -----------------------------------------------------------------------------------------------
    @api_method(params=[L.ID, clone.CLONE_NAME, clone.CLONE_OPTIONS], result=S.VM_ENTRY, roles=("VM_WRITE",))
    async def clone(self, id_: int, name: str | None, options: dict[str, Any]) -> dict[str, Any]:
        """Clone a VM: new name, uuid, MACs and display ports; DISK volumes copied in the storage pool. A template
        also has linked clones (options.linked), whose disks are qcow2 overlays on its volumes; it cannot be deleted
        while they exist, and deleting one leaves the template as it was."""
        async with self.guard(id_).shared():
            return await clone.clone(self, id_, name, options)

    # -- statistics -------------------------------------------------------------------------------------------
    @api_method(params=[stats_api.IDS], result=stats_api.STATS_RESULT, roles=stats_api.READ)
    async def get_stats(self, ids: list[int] | None, *, app: "RpcConnection | None" = None) -> list[Any]:
        """The latest statistics of running VMs (CPU, memory, per-disk and per-NIC counters and rates),
        sampled every 2 seconds by the daemon; the same entries the vm.stats event carries."""
        return await stats_api.get_stats(self, self.stats_sampler, ids, app=app)

    @api_method(params=[stats_api.HISTORY_ID, stats_api.SINCE], result=stats_api.HISTORY_RESULT, roles=stats_api.READ)
    async def get_stats_history(self, id_: int, since: float, *,
                                app: "RpcConnection | None" = None) -> list[dict[str, Any]]:
        """The VM's statistics of the last hour (one point per interval while it ran), for a graph that
        shows at once; follow it live with the vm.stats event."""
        return await stats_api.get_stats_history(self, self.stats_sampler, id_, since, app=app)

    # -- serial console ------------------------------------------------------------------------------------------
    @api_method(params=[info.VM_ID, info.HOST, serial_api.URI_OPTIONS], result=serial_api.URI_RESULT,
                roles=serial_api.CONSOLE)
    async def get_console_web_uri(self, id_: int, host: str, options: dict[str, Any], *,
                                  app: "RpcConnection | None" = None) -> str:
        """A WebSocket URI for the VM's serial console (running or not: output starts when it runs).

        Several viewers may connect; the first that may type holds the keyboard, the others are told who
        does, and the keyboard passes on when its holder leaves. The last 64 KiB of output are replayed.
        """
        return await serial_api.get_console_web_uri(self, id_, host, options, app=app)

    @api_method(params=[info.VM_ID], result=serial_api.VIEWERS_RESULT, roles=("VM_READ",))
    async def get_console_viewers(self, id_: int) -> dict[str, Any]:
        """Who watches the VM's serial console and who holds its keyboard."""
        return await serial_api.get_console_viewers(self, self.serial_consoles, id_)

    # -- guest agent ---------------------------------------------------------------------------------------------
    @api_method(params=[info.VM_ID], result=guest_agent.GUEST_INFO_RESULT, roles=("VM_READ",))
    async def get_guest_info(self, id_: int) -> dict[str, Any]:
        """What the QEMU guest agent in the running guest reports: OS, host name, time zone, IP addresses per
        interface, filesystems. Without an answering agent (none installed, not started yet, VM stopped) the
        fields are null and reason says why."""
        return await guest_agent.get_guest_info(self, id_)

    # -- OVA import ---------------------------------------------------------------------------------------------
    @api_method(params=[ova_api.IMPORT_OVA], result=ova_api.IMPORTED, roles=("VM_DEVICE_WRITE",),
                job=JobOptions(abortable=True, logs=True, description=lambda a: f"Importing {a[0]['path']}"))
    async def import_ova(self, data: dict[str, Any], *, job: Job) -> dict[str, Any]:
        """Create a VM from an OVA: its CPUs, memory, disks (converted into new qcow2 volumes, with qemu-img's
        percentages) and NICs. What the OVF describes beyond that is listed in `unknown` and the job log. An
        abort or a failure leaves no volume and no VM behind."""
        return await ova_api.import_ova(self, data, job=job)
