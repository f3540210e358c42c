"""vm.start/stop/poweroff/restart/suspend/resume/status: domain lifecycle driven through libvirt."""
from __future__ import annotations

import errno
import logging
from typing import Any

import libvirt

from middlewared.errors import CallError
from middlewared.job import Job
from middlewared.plugins.vm import lifecycle_schemas as S
from middlewared.plugins.vm.memory import VMMemoryMixin
from middlewared.plugins.vm.model import VMRecord, VMState
from middlewared.plugins.vm.records import VMRecords
from middlewared.service import NULL_RESULT, JobOptions, api_method

logger = logging.getLogger(__name__)

WRITE = ("VM_WRITE",)
READ = ("VM_READ",)


def _vm_lock(args: list[Any]) -> str:
    return f"vm_lifecycle_{args[0]}"


def _define_and_start(conn: libvirt.virConnect, xml: str) -> None:
    conn.defineXML(xml).create()


def _domain_call(conn: libvirt.virConnect, name: str, action: str) -> None:
    dom = conn.lookupByName(name)
    if action == "acpi":
        dom.shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_ACPI_POWER_BTN)
    elif action == "destroy":
        dom.destroy()
    elif action == "suspend":
        dom.suspend()
    elif action == "resume":
        dom.resume()
    else:
        raise ValueError(action)


class VMLifecycleMixin(VMMemoryMixin, VMRecords):
    """Lifecycle methods of the vm service."""

    async def _vm(self, id_: int) -> tuple[dict[str, Any], VMRecord]:
        vm = await self.get_instance(id_)
        return vm, VMRecord.from_row(vm)

    @api_method(params=[S.ID, S.START_OPTIONS], result=NULL_RESULT, roles=WRITE)
    async def start(self, id_: int, options: dict[str, Any]) -> None:
        """Start a stopped VM: check memory and devices, redefine its domain from the record, boot it."""
        vm, record = await self._vm(id_)
        state = vm["status"]["state"]
        if state == VMState.RUNNING:
            raise CallError(f"VM {record.name} is already running", errno.EINVAL)
        if state == VMState.SUSPENDED:
            raise CallError(f"VM {record.name} is suspended; use vm.resume", errno.EINVAL)
        await self.check_memory(vm, options["overcommit"])
        # From the stored rows, secrets included (the entry's are masked), and the host as checked just now.
        devices = (await self.stored_vms())[id_]["devices"]
        host = await self.devices.check_available(id_, record.name, devices)
        xml = self.domain_xml(record, devices, host)
        await self.hypervisor.run(_define_and_start, xml)
        await self.hypervisor.wait_for(record.domain_name, {VMState.RUNNING, VMState.SUSPENDED}, 5)

    @api_method(params=[S.ID, S.STOP_OPTIONS], result=NULL_RESULT, roles=WRITE,
                job=JobOptions(lock=_vm_lock, description=lambda a: f"Stopping VM {a[0]}"))
    async def stop(self, id_: int, options: dict[str, Any], *, job: Job) -> None:
        """Stop a VM: ACPI shutdown waiting up to shutdown_timeout, or at once with force."""
        vm, record = await self._vm(id_)
        if vm["status"]["state"] == VMState.STOPPED:
            raise CallError(f"VM {record.name} is not running", errno.EINVAL)
        if options["force"]:
            await self._power_off(record, job, "Powered off")
            return
        await self._acpi_stop(vm, record, job, options["force_after_timeout"])

    async def _acpi_stop(self, vm: dict[str, Any], record: VMRecord, job: Job,
                         force_after_timeout: bool) -> None:
        name = record.domain_name
        if vm["status"]["state"] == VMState.SUSPENDED:
            # A paused guest cannot react to the power button: let it run so it can shut down.
            await self.hypervisor.run(_domain_call, name, "resume")
        timeout = record.shutdown_timeout
        # Only the guest's OS acts on the power button: firmware alone, or an OS without ACPI support, never
        # does. Say so while waiting, and what happens at the end of the wait.
        then = "then it is powered off" if force_after_timeout else "then the stop fails"
        job.set_progress(0, f"Sent ACPI shutdown to {record.name}; waiting up to {timeout} s for the guest OS to "
                            f"react (a guest without an OS ignores it), {then}")
        await self.hypervisor.run(_domain_call, name, "acpi")
        for elapsed in range(1, timeout + 1):
            if await self.hypervisor.wait_for(name, {VMState.STOPPED}, 1):
                job.set_progress(100, f"{record.name} shut down after ACPI request")
                return
            job.set_progress(100 * elapsed / timeout, f"Waiting for {record.name}'s OS to react to ACPI shutdown "
                                                      f"({elapsed}/{timeout} s, {then})")
        if force_after_timeout:
            await self._power_off(record, job, f"Powered off after {timeout} s without ACPI shutdown")
            return
        raise CallError(f"VM {record.name} did not shut down within {timeout} seconds; it is still "
                        "running (use force or force_after_timeout)", errno.ETIMEDOUT)

    async def _power_off(self, record: VMRecord, job: Job | None, what: str) -> None:
        try:
            await self.hypervisor.run(_domain_call, record.domain_name, "destroy")
        except CallError:
            if self.hypervisor.status(record.domain_name).state != VMState.STOPPED:
                raise
        await self.hypervisor.wait_for(record.domain_name, {VMState.STOPPED}, 10)
        if job is not None:
            job.set_progress(100, what)

    @api_method(params=[S.ID], result=NULL_RESULT, roles=WRITE)
    async def poweroff(self, id_: int) -> None:
        """Power a VM off at once, without asking the guest."""
        vm, record = await self._vm(id_)
        if vm["status"]["state"] == VMState.STOPPED:
            raise CallError(f"VM {record.name} is not running", errno.EINVAL)
        await self._power_off(record, None, "Powered off")

    @api_method(params=[S.ID], result=NULL_RESULT, roles=WRITE,
                job=JobOptions(lock=_vm_lock, description=lambda a: f"Restarting VM {a[0]}"))
    async def restart(self, id_: int, *, job: Job) -> None:
        """Stop a VM (ACPI, powered off after shutdown_timeout) and start it again."""
        vm, record = await self._vm(id_)
        if vm["status"]["state"] == VMState.STOPPED:
            raise CallError(f"VM {record.name} is not running", errno.EINVAL)
        await self._acpi_stop(vm, record, job, True)
        job.set_progress(90, f"Starting {record.name}")
        await self.start(id_, {"overcommit": True})
        job.set_progress(100, f"{record.name} restarted")

    @api_method(params=[S.ID], result=NULL_RESULT, roles=WRITE)
    async def suspend(self, id_: int) -> None:
        """Pause a running VM (its memory stays allocated)."""
        await self._pause_or_resume(id_, VMState.RUNNING, "suspend", VMState.SUSPENDED)

    @api_method(params=[S.ID], result=NULL_RESULT, roles=WRITE)
    async def resume(self, id_: int) -> None:
        """Resume a suspended VM."""
        await self._pause_or_resume(id_, VMState.SUSPENDED, "resume", VMState.RUNNING)

    async def _pause_or_resume(self, id_: int, needed: VMState, action: str, result: VMState) -> None:
        vm, record = await self._vm(id_)
        state = vm["status"]["state"]
        if state != needed:
            what = "running" if needed == VMState.RUNNING else "suspended"
            raise CallError(f"VM {record.name} is not {what} (state {state})", errno.EINVAL)
        await self.hypervisor.run(_domain_call, record.domain_name, action)
        await self.hypervisor.wait_for(record.domain_name, {result}, 5)

    @api_method(params=[S.ID], result=S.STATUS_RESULT, roles=READ)
    async def status(self, id_: int) -> dict[str, Any]:
        """The VM's live state: {state, pid, domain_state}."""
        vm = await self.get_instance(id_)
        result: dict[str, Any] = vm["status"]
        return result
