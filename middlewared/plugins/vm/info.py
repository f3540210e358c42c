"""Helpers for clients: choices, a MAC, display ports and the web console URI, KVM support, QEMU logs."""
from __future__ import annotations

import asyncio
import os
import re
from typing import TYPE_CHECKING, Any, BinaryIO, Mapping

from middlewared import credentials as creds
from middlewared.errors import CallError
from middlewared.job import Job
from middlewared.pipe import OutputPipe
from middlewared.plugins.vm import capabilities
from middlewared.plugins.vm import web_console as W
from middlewared.plugins.vm.kvm import cached_probe_kvm
from middlewared.plugins.vm.model import VMRecord
from middlewared.plugins.vm.records import OVMF_DIR, qemu_log_path
from middlewared.plugins.vm.schemas import RESOLUTIONS
from middlewared.service import id_param

if TYPE_CHECKING:
    from middlewared.api.rpc import RpcConnection
    from middlewared.plugins.vm.records import VMRecords

READ = ("VM_READ",)
CHOICES_READ = ("VM_READ", "READONLY_ADMIN")
_OVMF_CODE = re.compile(r"^OVMF_CODE.*\.fd$")
LOG_CHUNK = 65536

VM_ID = id_param("id", "Id of the VM.")
_STRING_MAP = {"type": "object", "additionalProperties": {"type": "string", "description": "The same value."}}
RANDOM_MAC_RESULT: dict[str, Any] = {
    "title": "result", "type": "string", "pattern": r"^00:a0:98(:[0-9a-f]{2}){3}$",
    "description": "A MAC address 00:a0:98:xx:xx:xx with random last three octets."}
PORT_WIZARD_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "Two free ports for a new DISPLAY device.",
    "properties": {"port": {"type": "integer", "description": "Port for the display server (SPICE/VNC)."},
                   "web": {"type": "integer", "description": "Port for the web client."}}}
MAX_VCPUS_RESULT: dict[str, Any] = {
    "title": "result", "type": "integer", "minimum": 1,
    "description": "Most vCPUs (vcpus x cores x threads) a guest may have on the default machine type."}
VIRT_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "Whether guests can use KVM acceleration.",
    "properties": {"supported": {"type": "boolean", "description": "KVM is usable by QEMU."},
                   "error": {"type": ["string", "null"], "description": "Why KVM is not usable, or null."}}}
BOOTLOADER_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "Bootloader value -> label.",
    "additionalProperties": {"type": "string", "description": "Label."}}
CHOICES_RESULT: dict[str, Any] = {"title": "result", **_STRING_MAP, "description": "Each choice -> itself."}
ARCH_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "Guest architecture -> its machine types.",
    "additionalProperties": {"type": "array", "description": "Machine types.",
                             "items": {"type": "string", "description": "A machine type."}}}
DISPLAY_DEVICES_RESULT: dict[str, Any] = {
    "title": "result", "type": "array", "description": "The VM's DISPLAY devices, passwords left out.",
    "items": {"type": "object", "description": "A device; attributes.password_configured tells whether "
                                               "it has a password."}}
HOST: dict[str, Any] = {"title": "host", "type": "string", "default": "", "pattern": r"^[A-Za-z0-9.:\[\]-]*$",
                        "description": "Host name or address, with or without :port, the browser reaches this "
                                       "daemon at; empty: the address the caller reached it at. Without a "
                                       "port, the daemon's own port."}
WEB_URI_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "How to build the URI.",
    "properties": {"protocol": {"type": "string", "enum": ["HTTP", "HTTPS"], "default": "HTTP",
                                "description": "URI scheme."}}}
WEB_URI_RESULT: dict[str, Any] = {
    "title": "result", "type": "object", "description": "The web console URI, or why there is none.",
    "properties": {"error": {"type": ["string", "null"], "description": "Why there is no URI, or null."},
                   "uri": {"type": ["string", "null"], "description": "The URI, or null."}}}
LOG_PATH_RESULT: dict[str, Any] = {
    "title": "result", "type": ["string", "null"], "description": "Path of the VM's QEMU log, null if none."}


# -- pure pieces ---------------------------------------------------------------------------------
def display_view(device: Mapping[str, Any]) -> dict[str, Any]:
    """A DISPLAY device as clients see it: no password, password_configured instead."""
    attributes = {k: v for k, v in device["attributes"].items() if k != "password"}
    attributes["password_configured"] = bool(device["attributes"].get("password"))
    return {**device, "attributes": attributes}


# -- host side -----------------------------------------------------------------------------------
def _ovmf_files() -> list[str]:
    try:
        return sorted(f for f in os.listdir(OVMF_DIR) if _OVMF_CODE.match(f))
    except FileNotFoundError:
        return []


def _open_or_none(path: str) -> BinaryIO | None:
    try:
        return open(path, "rb")
    except FileNotFoundError:
        return None


async def copy_to_pipe(path: str, pipe: OutputPipe) -> None:
    """Write a file (nothing if it is missing) into a job's output pipe, then close the pipe."""
    f = await asyncio.to_thread(_open_or_none, path)
    try:
        while f is not None and (chunk := await asyncio.to_thread(f.read, LOG_CHUNK)):
            await pipe.write(chunk)
    finally:
        if f is not None:
            f.close()
        await pipe.close()


async def random_mac(vms: "VMRecords") -> str:
    """A random MAC address in the 00:a0:98 prefix."""
    return vms.devices.random_mac()


async def port_wizard(vms: "VMRecords") -> dict[str, int]:
    """The two lowest ports from 5900 used by no DISPLAY device and no listening socket."""
    ports = await vms.devices.free_display_ports(2, {vms.middleware.config.server.port})
    if len(ports) < 2:
        raise CallError("No free ports left for a display device")
    return {"port": ports[0], "web": ports[1]}


async def maximum_supported_vcpus(vms: "VMRecords") -> int:
    """Most vCPUs a guest may have: the default machine type's limit as libvirt reports it."""
    return await capabilities.max_vcpus(vms.hypervisor)


async def virtualization_details(vms: "VMRecords") -> dict[str, Any]:
    """Whether QEMU can really run guests with KVM here (a probe guest is run once), and why not."""
    probe = await cached_probe_kvm()
    return {"supported": probe.usable, "error": probe.error}


async def bootloader_options(vms: "VMRecords") -> dict[str, str]:
    """Bootloader choices: UEFI, or legacy BIOS (UEFI_CSM)."""
    return {"UEFI": "UEFI", "UEFI_CSM": "Legacy BIOS"}


async def bootloader_ovmf_choices(vms: "VMRecords") -> dict[str, str]:
    """OVMF code files (OVMF_CODE*.fd) installed on the host."""
    return {f: f for f in await asyncio.to_thread(_ovmf_files)}


async def cpu_model_choices(vms: "VMRecords") -> dict[str, str]:
    """CPU models libvirt knows for the host architecture (for cpu_mode CUSTOM)."""
    return {m: m for m in sorted(await capabilities.cpu_models(vms.hypervisor))}


async def resolution_choices(vms: "VMRecords") -> dict[str, str]:
    """Screen resolutions of DISPLAY devices."""
    return {r: r for r in RESOLUTIONS}


async def guest_architecture_and_machine_choices(vms: "VMRecords") -> dict[str, list[str]]:
    """Guest architectures libvirt can run here, each with its machine types."""
    return capabilities.arch_machines(
        await capabilities.host_fact(vms.hypervisor, "capabilities", capabilities.capabilities_xml))


async def get_display_devices(vms: "VMRecords", id_: int) -> list[dict[str, Any]]:
    """The VM's DISPLAY devices, with password_configured instead of the password."""
    vm = await vms.get_instance(id_)
    return [display_view(d) for d in vm["devices"] if d["attributes"].get("dtype") == "DISPLAY"]


async def get_display_web_uri(vms: "VMRecords", id_: int, host: str, options: dict[str, Any], *,
                              app: "RpcConnection | None" = None) -> dict[str, str | None]:
    """The web (spice-html5) console URI of a running VM's web-enabled SPICE display.

    The URI carries a single-use ticket valid for 5 minutes, and the display's password only for
    callers who may change the VM (VM_WRITE on it); others type the password in the page.
    """
    vm = await vms.get_instance(id_)
    device, error = W.web_display(vm)
    if device is None:
        return {"error": error, "uri": None}
    credentials = app.credentials if app is not None else creds.root("INTERNAL")
    stored = next(d for d in (await vms.stored_vms())[id_]["devices"] if d["id"] == device["id"])
    password = stored["attributes"].get("password") or None
    if password and not await W.may_call(vms.middleware, "vm.update", credentials, id_):
        password = None
    server = vms.middleware.config.server
    netloc = W.authority(host or W.local_host(app and app.ws.get_extra_info("sockname"), server.host),
                         server.port)
    ticket = W.issue(vms.middleware.tokens, credentials, id_, device["id"], W.TICKET)
    return {"error": None, "uri": W.console_uri(options["protocol"], netloc, device["id"], ticket,
                                                vm["name"], password, device["attributes"].get("type", "SPICE"))}


async def get_display_connections(vms: "VMRecords", table: W.ConsoleTable, id_: int) -> dict[str, Any]:
    """The VM's web console bridges: how many are open, were opened and closed, and the bytes relayed."""
    await vms.get_instance(id_)
    return table.report(id_)


async def log_file_download(vms: "VMRecords", id_: int, *, job: Job) -> None:
    """Stream the VM's QEMU log (empty if none) into the job's output pipe; fetch it with core.download."""
    vm = await vms.get_instance(id_)
    if job.pipes_output is None:
        raise CallError("vm.log_file_download needs an output pipe")
    await copy_to_pipe(qemu_log_path(VMRecord.from_row(vm).domain_name), job.pipes_output)


async def log_file_path(vms: "VMRecords", id_: int) -> str | None:
    """Path of the VM's QEMU log, or null when it does not exist."""
    path = qemu_log_path(VMRecord.from_row(await vms.get_instance(id_)).domain_name)
    return path if await asyncio.to_thread(os.path.exists, path) else None
