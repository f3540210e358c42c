"""vm.start/stop/poweroff/restart/suspend/resume/status: domain lifecycle driven through libvirt."""
from __future__ import annotations

import errno
import logging
import re
from typing import TYPE_CHECKING, Any

import libvirt

from middlewared.errors import CallError
from middlewared.job import Job
from middlewared.plugins.vm import lifecycle_schemas as S
from middlewared.plugins.vm import guest_agent, memory, template
from middlewared.plugins.vm.model import VMRecord, VMState

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords

logger = logging.getLogger(__name__)

WRITE = ("VM_WRITE",)
READ = ("VM_READ",)


ASKED = " and to the guest agent's shutdown request"


def vm_lock(args: list[Any]) -> str:
    return f"vm_lifecycle_{args[0]}"


# libvirt's own definition of a domain, secrets included: a password changed with virsh counts as a change.
_DEFINITION = libvirt.VIR_DOMAIN_XML_INACTIVE | libvirt.VIR_DOMAIN_XML_SECURE


def _define_and_start(conn: libvirt.virConnect, name: str, xml: str, defined: dict[str, tuple[str, str]]) -> None:
    """Define the domain from xml, then start it. The define is skipped when libvirt still holds exactly what the
    last define from the same xml left: a define has libvirtd parse and check the XML and write the domain's file
    again, which most starts (a VM stopped and started again, unchanged) need not wait for."""
    kept = defined.get(name)
    dom = None
    if kept is not None and kept[0] == xml:
        try:
            candidate = conn.lookupByName(name)
            if candidate.XMLDesc(_DEFINITION) == kept[1]:
                dom = candidate
        except libvirt.libvirtError:
            pass  # undefined meanwhile: defined again below
    if dom is None:
        defined.pop(name, None)
        dom = conn.defineXML(xml)
        defined[name] = (xml, dom.XMLDesc(_DEFINITION))
    dom.create()


# libvirt's own refusal of a display port another domain on the same libvirtd holds (another daemon's VM, or
# one that took it between the start check and this start).
_PORT_CLASH = re.compile(r"Failed to reserve port (\d+)")


def port_clash(name: str, error: CallError) -> CallError | None:
    """A failed domain start's error naming the display port libvirt refused, if that was the failure."""
    clash = _PORT_CLASH.search(error.errmsg)
    if clash is None:
        return None
    return CallError(f"VM {name} cannot start: display port {clash[1]} is held by another virtual machine on this "
                     'host (vm.device.update with "port": null picks a free one)', errno.EADDRINUSE)


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


async def _vm(vms: "VMRecords", id_: int) -> tuple[dict[str, Any], VMRecord]:
    vm = await vms.get_instance(id_)
    return vm, VMRecord.from_row(vm)


async def start(vms: "VMRecords", id_: int, options: dict[str, Any]) -> None:
    """Start a stopped VM: check memory and devices, redefine its domain from the record, boot it."""
    vm, record = await _vm(vms, id_)
    template.refuse_template(vm, "be started")
    state = vm["status"]["state"]
    if state == VMState.RUNNING:
        raise CallError(f"VM {record.name} is already running", errno.EINVAL)
    if state == VMState.SUSPENDED:
        raise CallError(f"VM {record.name} is suspended; use vm.resume", errno.EINVAL)
    await memory.check_memory(vms, vm, options["overcommit"])
    # From the stored rows, secrets included (the entry's are masked), and the host as checked just now.
    devices = (await vms.stored_vms())[id_]["devices"]
    host = await vms.devices.check_available(id_, record.name, devices)
    xml = vms.domain_xml(record, devices, host)
    try:
        await vms.hypervisor.run(_define_and_start, record.domain_name, xml, vms.hypervisor.host_watch.defined)
    except CallError as e:
        clash = port_clash(record.name, e)
        if clash is None:
            raise
        raise clash from e
    await vms.hypervisor.wait_for(record.domain_name, {VMState.RUNNING, VMState.SUSPENDED}, 5)


async def stop(vms: "VMRecords", id_: int, options: dict[str, Any], *, job: Job) -> None:
    """Stop a VM: ACPI shutdown waiting up to shutdown_timeout, or at once with force."""
    vm, record = await _vm(vms, id_)
    if vm["status"]["state"] == VMState.STOPPED:
        raise CallError(f"VM {record.name} is not running", errno.EINVAL)
    if options["force"]:
        await _power_off(vms, record, job, "Powered off")
        return
    await _acpi_stop(vms, vm, record, job, options["force_after_timeout"])


async def _acpi_stop(vms: "VMRecords", vm: dict[str, Any], record: VMRecord, job: Job,
                     force_after_timeout: bool) -> None:
    name = record.domain_name
    if vm["status"]["state"] == VMState.SUSPENDED:
        # A paused guest cannot react to the power button: let it run so it can shut down.
        await vms.hypervisor.run(_domain_call, name, "resume")
    timeout = record.shutdown_timeout
    # Only the guest's OS acts on the power button: firmware alone, or an OS without ACPI support, never
    # does. Say so while waiting, and what happens at the end of the wait.
    then = "then it is powered off" if force_after_timeout else "then the stop fails"
    job.set_progress(0, f"Sent ACPI shutdown to {record.name}; waiting up to {timeout} s for the guest OS to "
                        f"react (a guest without an OS ignores it), {then}")
    await vms.hypervisor.run(_domain_call, name, "acpi")
    # Halfway, a guest that ignores the power button is asked through its guest agent, if it runs one.
    agent_at, agent = max(1, timeout // 2), ""
    for elapsed in range(1, timeout + 1):
        if await vms.hypervisor.wait_for(name, {VMState.STOPPED}, 1):
            job.set_progress(100, f"{record.name} shut down after {'guest agent' if agent == ASKED else 'ACPI'} "
                                  "request")
            return
        if elapsed == agent_at:
            why = await guest_agent.ask_shutdown(vms, record)
            agent = ASKED if why is None else f"; no guest agent to ask ({why})"
        job.set_progress(100 * elapsed / timeout, f"Waiting for {record.name}'s OS to react to ACPI shutdown"
                                                  f"{agent} ({elapsed}/{timeout} s, {then})")
    if force_after_timeout:
        await _power_off(vms, record, job, f"Powered off after {timeout} s without ACPI shutdown")
        return
    raise CallError(f"VM {record.name} did not shut down within {timeout} seconds; it is still "
                    "running (use force or force_after_timeout)", errno.ETIMEDOUT)


async def _power_off(vms: "VMRecords", record: VMRecord, job: Job | None, what: str) -> None:
    try:
        await vms.hypervisor.run(_domain_call, record.domain_name, "destroy")
    except CallError:
        if vms.hypervisor.status(record.domain_name).state != VMState.STOPPED:
            raise
    await vms.hypervisor.wait_for(record.domain_name, {VMState.STOPPED}, 10)
    if job is not None:
        job.set_progress(100, what)


async def poweroff(vms: "VMRecords", id_: int) -> None:
    """Power a VM off at once, without asking the guest."""
    vm, record = await _vm(vms, id_)
    if vm["status"]["state"] == VMState.STOPPED:
        raise CallError(f"VM {record.name} is not running", errno.EINVAL)
    await _power_off(vms, record, None, "Powered off")


async def restart(vms: "VMRecords", id_: int, *, job: Job) -> None:
    """Stop a VM (ACPI, powered off after shutdown_timeout) and start it again."""
    vm, record = await _vm(vms, id_)
    if vm["status"]["state"] == VMState.STOPPED:
        raise CallError(f"VM {record.name} is not running", errno.EINVAL)
    await _acpi_stop(vms, vm, record, job, True)
    job.set_progress(90, f"Starting {record.name}")
    await start(vms, id_, {"overcommit": True})
    job.set_progress(100, f"{record.name} restarted")


async def suspend(vms: "VMRecords", id_: int) -> None:
    """Pause a running VM (its memory stays allocated)."""
    await _pause_or_resume(vms, id_, VMState.RUNNING, "suspend", VMState.SUSPENDED)


async def resume(vms: "VMRecords", id_: int) -> None:
    """Resume a suspended VM."""
    await _pause_or_resume(vms, id_, VMState.SUSPENDED, "resume", VMState.RUNNING)


async def _pause_or_resume(vms: "VMRecords", id_: int, needed: VMState, action: str, result: VMState) -> None:
    vm, record = await _vm(vms, id_)
    state = vm["status"]["state"]
    if state != needed:
        what = "running" if needed == VMState.RUNNING else "suspended"
        raise CallError(f"VM {record.name} is not {what} (state {state})", errno.EINVAL)
    await vms.hypervisor.run(_domain_call, record.domain_name, action)
    await vms.hypervisor.wait_for(record.domain_name, {result}, 5)


async def status(vms: "VMRecords", id_: int) -> dict[str, Any]:
    """The VM's live state: {state, pid, domain_state, started_at}."""
    vm = await vms.get_instance(id_)
    result: dict[str, Any] = vm["status"]
    return result
