"""vm.get_guest_info and the guest-agent shutdown vm.stop falls back to: the QEMU guest agent, through libvirt.

Every domain has the agent's virtio-serial channel (``org.qemu.guest_agent.0``, domain_xml.py); it does nothing
until a guest runs ``qemu-ga``. libvirt answers agent requests at once with an error while no agent is connected,
so asking costs nothing on guests without one: the answer then has null fields and the reason.
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, Mapping

import libvirt

from middlewared.errors import CallError
from middlewared.plugins.vm.model import VMRecord, VMState

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords

logger = logging.getLogger(__name__)

INFO_TYPES = (libvirt.VIR_DOMAIN_GUEST_INFO_OS | libvirt.VIR_DOMAIN_GUEST_INFO_HOSTNAME
              | libvirt.VIR_DOMAIN_GUEST_INFO_FILESYSTEM | libvirt.VIR_DOMAIN_GUEST_INFO_TIMEZONE)
NOT_RUNNING = "The VM is not running"
_OS_KEYS = {"id": "os.id", "name": "os.name", "pretty_name": "os.pretty-name", "version": "os.version",
            "version_id": "os.version-id", "kernel_release": "os.kernel-release", "machine": "os.machine"}
_S = {"type": ["string", "null"]}
_I = {"type": ["integer", "null"]}

GUEST_INFO_RESULT: dict[str, Any] = {
    "title": "result", "type": "object",
    "description": "What the guest agent reports; every field but agent and reason is null without an agent.",
    "properties": {
        "agent": {"type": "boolean", "description": "Whether a guest agent answered."},
        "reason": {**_S, "description": "Why the fields are null (VM not running, no agent answering), or null."},
        "os": {"type": ["object", "null"], "description": "The guest OS (os-release and uname).",
               "properties": {k: {**_S, "description": f"os-release/uname {v[3:]}."} for k, v in _OS_KEYS.items()}},
        "hostname": {**_S, "description": "The guest's host name."},
        "timezone": {**_S, "description": "The guest's time zone name."},
        "interfaces": {"type": ["array", "null"], "description": "The guest's network interfaces.", "items": {
            "type": "object", "description": "One interface.", "properties": {
                "name": {"type": "string", "description": "Interface name in the guest."},
                "mac": {**_S, "description": "Its MAC address."},
                "addresses": {"type": "array", "description": "Its IP addresses.", "items": {
                    "type": "object", "description": "One address.", "properties": {
                        "type": {"type": "string", "enum": ["ipv4", "ipv6"], "description": "Family."},
                        "address": {"type": "string", "description": "The address."},
                        "prefix": {**_I, "description": "Prefix length."}}}}}}},
        "filesystems": {"type": ["array", "null"], "description": "Mounted filesystems.", "items": {
            "type": "object", "description": "One filesystem.", "properties": {
                "mountpoint": {"type": "string", "description": "Where it is mounted."},
                "name": {**_S, "description": "Its device in the guest."},
                "type": {**_S, "description": "Filesystem type."},
                "total_bytes": {**_I, "description": "Size."},
                "used_bytes": {**_I, "description": "Space used."}}}},
    },
}


def no_agent(reason: str) -> dict[str, Any]:
    """The answer when nothing could be asked or nobody answered."""
    return {"agent": False, "reason": reason, "os": None, "hostname": None, "timezone": None,
            "interfaces": None, "filesystems": None}


def parse_info(info: Mapping[str, Any], addresses: Mapping[str, Any]) -> dict[str, Any]:
    """The result from virDomainGetGuestInfo's flat keys and virDomainInterfaceAddresses(agent)."""
    filesystems = [{"mountpoint": info.get(f"fs.{i}.mountpoint", ""), "name": info.get(f"fs.{i}.name"),
                    "type": info.get(f"fs.{i}.fstype"), "total_bytes": info.get(f"fs.{i}.total-bytes"),
                    "used_bytes": info.get(f"fs.{i}.used-bytes")} for i in range(int(info.get("fs.count", 0)))]
    interfaces = [{"name": name, "mac": iface.get("hwaddr"), "addresses": [
        {"type": "ipv6" if a.get("type") == libvirt.VIR_IP_ADDR_TYPE_IPV6 else "ipv4", "address": a.get("addr"),
         "prefix": a.get("prefix")} for a in iface.get("addrs") or ()]} for name, iface in addresses.items()]
    return {"agent": True, "reason": None, "os": {k: info.get(v) for k, v in _OS_KEYS.items()},
            "hostname": info.get("hostname"), "timezone": info.get("timezone.name"),
            "interfaces": interfaces, "filesystems": filesystems}


def _ask(conn: libvirt.virConnect, name: str) -> tuple[dict[str, Any], dict[str, Any]]:
    dom = conn.lookupByName(name)
    info = dom.guestInfo(INFO_TYPES, 0)
    addresses = dom.interfaceAddresses(libvirt.VIR_DOMAIN_INTERFACE_ADDRESSES_SRC_AGENT, 0)
    return info, addresses


def _agent_shutdown(conn: libvirt.virConnect, name: str) -> None:
    conn.lookupByName(name).shutdownFlags(libvirt.VIR_DOMAIN_SHUTDOWN_GUEST_AGENT)


async def get_guest_info(vms: "VMRecords", id_: int) -> dict[str, Any]:
    """vm.get_guest_info: OS, host name, addresses and filesystems from the guest agent, or why not."""
    record = VMRecord.from_row(await vms.get_instance(id_))
    if vms.hypervisor.status(record.domain_name).state != VMState.RUNNING:
        return no_agent(NOT_RUNNING)
    try:
        info, addresses = await vms.hypervisor.run(_ask, record.domain_name)
    except CallError as e:
        return no_agent(f"No guest agent answered: {e.errmsg}")
    return parse_info(info, addresses)


async def ask_shutdown(vms: "VMRecords", record: VMRecord) -> str | None:
    """Ask the guest agent to shut the guest down; None when it took the request, else why not."""
    try:
        await vms.hypervisor.run(_agent_shutdown, record.domain_name)
    except CallError as e:
        return e.errmsg
    return None
