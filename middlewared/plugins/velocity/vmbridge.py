"""The Velocity API's one way into vm.* and vm.device.* (records, lifecycle, networks): when those plugins
change shape, this module is the one to follow."""
from __future__ import annotations

import hashlib
import ipaddress
import logging
import sqlite3
from typing import TYPE_CHECKING, Any, Callable

import libvirt

from middlewared.job import JobState
from middlewared.plugins.auth import quotas
from middlewared.plugins.auth.acl import VMGroupService
from middlewared.plugins.velocity.accounts import validated
from middlewared.credentials import Credentials
from middlewared.plugins.vm import vm_service
from middlewared.plugins.vm import web_console as W
from middlewared.plugins.vm.schemas import FIELDS as VM_FIELDS

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

# vm.create's own rules for what Velocity calls name, cpus and memory_mib.
NAME, CPUS, MEMORY = VM_FIELDS["name"], VM_FIELDS["vcpus"], VM_FIELDS["memory"]

# vm.query status.state -> Velocity state.
STATES = {"RUNNING": "RUNNING", "SUSPENDED": "PAUSED", "STOPPED": "STOPPED", "ERROR": "ERROR"}
LIVE_JOBS = (JobState.WAITING, JobState.RUNNING)


async def entries(middleware: "Middleware") -> list[dict[str, Any]]:
    """Every VM as vm.query returns it."""
    return await vm_service(middleware).rows()


async def entry(middleware: "Middleware", vmid: int) -> dict[str, Any] | None:
    return await vm_service(middleware).row(vmid)


def state(vm: dict[str, Any]) -> str:
    """The Velocity state of a vm.query entry (transitions aside)."""
    return STATES.get(vm["status"]["state"], "ERROR")


def usage(cpus: int, memory_mib: int) -> quotas.Usage:
    return quotas.Usage(cpus, memory_mib)


async def quota_excess(middleware: "Middleware", gid: int, added: quotas.Usage,
                       leaving: tuple[int, ...] = ()) -> str | None:
    """Why a VM taking `added` in group gid (0: the root group, no quotas) would break a quota."""
    if gid == 0:
        return None
    return await middleware.service_of(VMGroupService).quota_excess(gid, added, leaving)


async def create(middleware: "Middleware", data: dict[str, Any], gid: int,
                 extra: Callable[[sqlite3.Connection, int], None]) -> dict[str, Any]:
    """vm.create, then the VM's group and extras in one transaction that also checks the group's quotas;
    when that fails the VM is removed again, so that a failed create leaves nothing behind."""
    service = vm_service(middleware)
    (params,) = validated(service, "create", [data])
    created = await service.create(params)
    try:
        await place(middleware, created["id"], gid, lambda db: extra(db, created["id"]))
    except BaseException:
        await service.delete(created["id"], {"zvols": False, "force": True})
        raise
    return created


async def place(middleware: "Middleware", vmid: int, gid: int, extra: Callable[[sqlite3.Connection], None]) -> None:
    """Put a VM in a group (0: none) and write extras, all in one transaction checked against quotas."""
    groups = middleware.service_of(VMGroupService)

    def write(db: sqlite3.Connection) -> None:
        db.execute("DELETE FROM vm_group_member WHERE vm = ?", (vmid,))
        if gid:
            db.execute("INSERT INTO vm_group_member (vm, vm_group) VALUES (?, ?)", (vmid, gid))
        extra(db)
        if gid:
            problem = quotas.problem(db, gid)
            if problem:
                raise QuotaError(problem)
    await groups.write(write, "vm_group_update.vms")


class QuotaError(Exception):
    """A write would break a group quota."""


async def update(middleware: "Middleware", vmid: int, data: dict[str, Any]) -> dict[str, Any]:
    service = vm_service(middleware)
    (_, params) = validated(service, "update", [vmid, data])
    return await service.update(vmid, params)


async def delete(middleware: "Middleware", vmid: int) -> None:
    service = vm_service(middleware)
    await service.delete(vmid, {"zvols": False, "force": True})


async def start(middleware: "Middleware", vmid: int) -> None:
    await vm_service(middleware).start(vmid, {"overcommit": False})


async def pause(middleware: "Middleware", vmid: int) -> None:
    await vm_service(middleware).suspend(vmid)


async def resume(middleware: "Middleware", vmid: int) -> None:
    await vm_service(middleware).resume(vmid)


async def poweroff(middleware: "Middleware", vmid: int) -> None:
    await vm_service(middleware).poweroff(vmid)


def stop(middleware: "Middleware", vmid: int) -> None:
    """A graceful stop as a vm.stop job (seen in core.get_jobs): powered off after the VM's shutdown_timeout."""
    method = middleware.methods["vm.stop"]
    args = method.arguments.validate([vmid, {"force_after_timeout": True}])
    middleware.submit_job(method, args, None)


def stopping(middleware: "Middleware", vmid: int) -> bool:
    """Whether a stop or restart job of the VM is under way (started over either API)."""
    return any(job.method in ("vm.stop", "vm.restart") and job.args[:1] == [vmid] and job.state in LIVE_JOBS
               for job in list(middleware.jobs.jobs.values()))


def _network_xml(name: str, address: str) -> str:
    interface = ipaddress.ip_interface(address)
    hosts = list(interface.network.hosts())
    # Interface names have at most 15 characters: a digest of the network's name keeps them apart.
    bridge = "mwnat" + hashlib.sha1(name.encode()).hexdigest()[:8]
    return (f"<network><name>{name}</name><forward mode='nat'/><bridge name='{bridge}' stp='on' delay='0'/>"
            f"<ip address='{interface.ip}' netmask='{interface.network.netmask}'><dhcp>"
            f"<range start='{hosts[1]}' end='{hosts[-1]}'/></dhcp></ip></network>")


async def ensure_nat_network(middleware: "Middleware", name: str, address: str) -> None:
    """Define (persistent, autostarted) and start the libvirt NAT network for Velocity NAT NICs when missing."""
    def ensure(conn: libvirt.virConnect) -> None:
        try:
            network = conn.networkLookupByName(name)
        except libvirt.libvirtError:
            network = conn.networkDefineXML(_network_xml(name, address))
            network.setAutostart(True)
            logger.info("defined libvirt NAT network %s (%s) for Velocity NAT NICs", name, address)
        if not network.isActive():
            network.create()
    await vm_service(middleware).hypervisor.run(ensure)


def console_uri(middleware: "Middleware", vm: dict[str, Any], credentials: Credentials, host: str,
                secure: bool) -> tuple[str | None, str | None]:
    """(the web console URI of a running VM's SPICE display, with a single-use ticket, or None; why not)."""
    device, error = W.web_display(vm)
    if device is None:
        return None, error
    ticket = W.issue(middleware.tokens, credentials, vm["id"], device["id"], W.TICKET)
    netloc = W.authority(host, middleware.config.server.port)
    return W.console_uri("https" if secure else "http", netloc, device["id"], ticket, vm["name"],
                         kind=device["attributes"].get("type", "SPICE")), None
