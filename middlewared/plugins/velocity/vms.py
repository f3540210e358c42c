"""/v/vm/list, /v/vm, /v/vm/efi, /v/nic/list: Velocity VMs, which are vm.* records in VM groups."""
from __future__ import annotations

import sqlite3
from typing import Any

from middlewared.plugins.velocity import permissions as P
from middlewared.plugins.velocity import schemas as S
from middlewared.plugins.velocity import vmbridge, vmshape
from middlewared.plugins.velocity.endpoint import Call, Endpoint
from middlewared.plugins.velocity.errors import ErrorSpec as Err

EFI_CODES = vmshape.Codes(media_missing=12211, nic_missing=12214, display_twice=12224, mode=12225, nic_type=12226,
                          no_host=12227, size=12228)
PATCH_CODES = vmshape.Codes(media_missing=16411, nic_missing=16414, display_twice=16424, mode=16425,
                            nic_type=16426, no_host=16427, size=16428)


def group_of(call: Call, vmid: int) -> int:
    """The Velocity group of a VM (0: in no VM group)."""
    return call.velocity.index.vm_group_of.get(vmid, P.ROOT_GID)


def velocity_state(call: Call, vm: dict[str, Any]) -> str:
    """The state Velocity reports: a transition under way, else the VM's own."""
    vmid = vm["id"]
    if vmid in call.velocity.transitions:
        return call.velocity.transitions[vmid]
    state = vmbridge.state(vm)
    if state != "STOPPED" and vmbridge.stopping(call.middleware, vmid):
        return "STOPPING"
    return state


async def find(call: Call, vmid: int, permission: str, missing: int, forbidden: int | None) -> dict[str, Any]:
    """The VM, checked: missing -> 404; without permission -> 403 (or 404 when forbidden is None)."""
    vm = await vmbridge.entry(call.middleware, vmid)
    if vm is None:
        raise call.error(missing, f"VM {vmid} does not exist")
    if not call.has(permission, group_of(call, vmid)):
        raise call.error(forbidden if forbidden is not None else missing,
                         f"{permission} is needed on the VM's group" if forbidden is not None
                         else f"VM {vmid} does not exist")
    return vm


async def extras(call: Call, vmid: int) -> dict[str, Any] | None:
    rows = await call.middleware.db.fetchall("SELECT * FROM velocity_vm WHERE vm = ?", (vmid,))
    return rows[0] if rows else None


async def vm_list(call: Call) -> dict[str, Any]:
    gid = call.body["gid"]
    call.require_group(gid, 17110)
    call.require("velocity.vm.view", gid, 17100)
    members = call.velocity.index.vm_group_of
    vms = [vm for vm in await vmbridge.entries(call.middleware) if members.get(vm["id"], P.ROOT_GID) == gid]
    return {"vms": [{"vmid": vm["id"], "name": vm["name"], "cpus": vmshape.cpus(vm), "memory_mib": vm["memory"],
                     "state": velocity_state(call, vm)} for vm in vms]}


async def vm_info(call: Call) -> dict[str, Any]:
    # Without velocity.vm.view the VM does not exist for the caller (and nothing is granted by asking).
    vm = await find(call, call.body["vmid"], "velocity.vm.view", 16110, None)
    return vmshape.info(call, vm, await extras(call, vm["id"]), velocity_state(call, vm))


async def _names_free(call: Call, name: str, gid: int, code: int, vmid: int | None = None) -> None:
    for vm in await vmbridge.entries(call.middleware):
        if vm["name"] == name and vm["id"] != vmid:
            where = "in this group" if group_of(call, vm["id"]) == gid else "on this host (names are host-wide)"
            raise call.error(code, f"A VM named {name} exists {where}")


def _quota(call: Call, problem: str | None, cpu_code: int, memory_code: int) -> None:
    if problem:
        raise call.error(cpu_code if problem.startswith("the cpus") else memory_code, f"Quota: {problem}")


async def _devices(call: Call, body: dict[str, Any], gid: int, codes: vmshape.Codes) -> tuple[list[Any], str]:
    displays, kept = await vmshape.displays(call, body.get("displays", []), codes)
    media = await vmshape.media(call, body.get("media", body.get("disks", [])), gid, codes)
    nics = vmshape.nics(call, body.get("nics", []), codes)
    if any(n["nic_attach"] == call.velocity.config.nat_network for n in nics):
        await vmbridge.ensure_nat_network(call.middleware, call.velocity.config.nat_network,
                                          call.velocity.config.nat_address)
    return [*media, *displays, *nics], kept


async def vm_efi(call: Call) -> dict[str, Any]:
    body, gid = call.body, call.body["gid"]
    memory: int = body["memory_mib"] if "memory_mib" in body else body["memory"]
    call.require_group(gid, 12210)
    call.require("velocity.vm.create", gid, 12200)
    await _names_free(call, body["name"], gid, 12223)
    devices, kept = await _devices(call, body, gid, EFI_CODES)
    _quota(call, await vmbridge.quota_excess(call.middleware, gid, vmbridge.usage(body["cpus"], memory)),
           12220, 12221)
    data = {"name": body["name"], "vcpus": body["cpus"], "cores": 1, "threads": 1, "memory": memory,
            "autostart": body.get("autostart", False), "bootloader": "UEFI",
            "devices": [{"attributes": a} for a in devices]}

    def extra(db: sqlite3.Connection, vmid: int) -> None:
        db.execute("INSERT INTO velocity_vm (vm, rosetta, displays) VALUES (?, ?, ?)",
                   (vmid, body.get("rosetta", False), kept))
    try:
        created = await vmbridge.create(call.middleware, data, gid, extra)
    except vmbridge.QuotaError as e:
        _quota(call, str(e), 12220, 12221)
        raise
    return {"vmid": created["id"]}


async def nic_list(call: Call) -> dict[str, Any]:
    if not P.anywhere(call.velocity.index, call.credentials, "velocity.nic.list"):
        raise call.error(11100)
    return {"host_nics": [{"nicid": n.nicid, "description": n.description, "identifier": n.bridge}
                          for n in call.velocity.config.nics]}


DISPLAY = S.response("A display.", {
    "name": S.string("A name, unique in the VM."), "width": S.integer("Width in pixels."),
    "height": S.integer("Height in pixels."), "ppi": S.integer("Pixels per inch (kept, not used).")})
MEDIA = S.response("An attached media.", {
    "mid": S.string("The media's MID."), "mode": S.string("USB, BLOCK (SATA) or VIRTIO (virtio-blk)."),
    "readonly": S.boolean("The guest may only read it.")})
NIC = S.response("A NIC.", {"type": S.string("NAT or BRIDGE."),
                            "host": {"type": ["integer", "null"], "description": "The host NICID (BRIDGE)."}})
STATE = S.string("STOPPED, STARTING, RUNNING, PAUSING, PAUSED, RESUMING, STOPPING or ERROR.")
VMID = S.integer("VM id (the vm.query id).")


def _in(schema: dict[str, Any], required: tuple[str, ...]) -> dict[str, Any]:
    """A request form of a response object schema: unknown keys ignored, some keys optional."""
    return {**schema, "additionalProperties": True, "required": list(required)}


_CPUS = {k: v for k, v in vmbridge.CPUS.items() if k != "default"}
VM_FIELDS: dict[str, Any] = {
    "cpus": {**_CPUS, "description": "Virtual CPUs."}, "memory_mib": {**vmbridge.MEMORY, "description": "Memory in MiB."},
    "memory": {**vmbridge.MEMORY, "description": "The same as memory_mib (the name Velocity's CLI sends)."},
    "displays": S.array(_in(DISPLAY, ("name", "width", "height")), "Displays (at most one here)."),
    "media": S.array(_in({**MEDIA, "properties": {**MEDIA["properties"], "readonly": S.boolean(
        "Block writing (it is also read-only when the media is, or the group may not write to its pool).")}},
        ("mid", "mode")), "Media attached, in boot order."),
    "disks": S.array(_in(MEDIA, ("mid", "mode")), "The same as media (the name Velocity's clients send)."),
    "nics": S.array(_in(NIC, ("type",)), "NICs, each with a MAC chosen once and kept."),
    "rosetta": S.boolean("Stored and reported; it has no effect on this platform."),
    "autostart": S.boolean("Start the VM when the daemon starts."),
}
VM_INFO = S.response("A VM.", {
    "vmid": VMID, "name": S.string("Name."), "type": S.string("EFI."), "state": STATE,
    "cpus": S.integer("Virtual CPUs."), "memory_mib": S.integer("Memory in MiB."),
    "displays": S.array(DISPLAY, "Displays."), "media": S.array(MEDIA, "Attached media."),
    "nics": S.array(NIC, "NICs."), "rosetta": S.boolean("Stored only."), "autostart": S.boolean("Autostart.")})

ENDPOINTS = [
    Endpoint("POST", "/v/vm/list", "The VMs of a group (not of its subgroups), with their state.", vm_list,
             request=S.request("Which group.", {"gid": S.GID}, ("gid",)),
             response=S.response("The VMs.", {"vms": S.array(S.response("A VM.", {
                 "vmid": VMID, "name": S.string("Name."), "cpus": S.integer("Virtual CPUs."),
                 "memory_mib": S.integer("Memory in MiB."), "state": STATE}), "VMs.")}),
             errors=(Err(403, 17100, "velocity.vm.view is needed on the group"), Err(404, 17110, "No such group")),
             audit=None),
    Endpoint("POST", "/v/vm", "A VM (404 also when you may not view it).", vm_info,
             request=S.request("Which VM.", {"vmid": VMID}, ("vmid",)), response=VM_INFO,
             errors=(Err(404, 16110, "No such VM, or velocity.vm.view is missing on its group"),), audit=None),
    Endpoint("PUT", "/v/vm/efi", "Create an EFI VM in a group.", vm_efi,
             request={**S.request("The new VM.", {"name": {**vmbridge.NAME, "description": "Name, unique on this host."},
                                                "gid": S.GID, **VM_FIELDS}, ("name", "gid", "cpus")),
                      "anyOf": [{"required": ["memory_mib"]}, {"required": ["memory"]}]},
             response=S.response("The new VM.", {"vmid": VMID}),
             errors=(Err(403, 12200, "velocity.vm.create is needed on the group"), Err(404, 12210, "No such group"),
                     Err(404, 12211, "No such media in the group or above"), Err(404, 12214, "No such host NIC"),
                     Err(406, 12220, "The CPU quota of the group or an ancestor would be exceeded"),
                     Err(406, 12221, "The memory quota of the group or an ancestor would be exceeded"),
                     Err(409, 12223, "A VM of that name exists"), Err(409, 12224, "Display names repeat"),
                     Err(406, 12225, "Unknown media mode, or media attached twice"),
                     Err(406, 12226, "Unknown NIC type"), Err(406, 12227, "A BRIDGE NIC without host"),
                     Err(406, 12228, "Unsupported display size, or more than one display"))),
    Endpoint("POST", "/v/nic/list", "Host NICs for BRIDGE NICs (needs velocity.nic.list on some group).", nic_list,
             request=S.request("Nothing.", {}),
             response=S.response("Host NICs.", {"host_nics": S.array(S.response("A host NIC.", {
                 "nicid": S.integer("NICID."), "description": S.string("Description."),
                 "identifier": S.string("The host bridge.")}), "Host NICs.")}),
             errors=(Err(403, 11100, "velocity.nic.list is needed"),), audit=None),
]
