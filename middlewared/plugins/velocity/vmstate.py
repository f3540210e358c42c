"""/v/vm/state (Velocity's state machine over vm.start/stop/suspend/resume), DELETE and PATCH /v/vm."""
from __future__ import annotations

import logging
import sqlite3
from typing import Any, Awaitable, Callable

from middlewared.errors import CallError
from middlewared.plugins.velocity import schemas as S
from middlewared.plugins.velocity import vmbridge
from middlewared.plugins.velocity.endpoint import Call, Endpoint
from middlewared.plugins.velocity.errors import ErrorSpec as Err
from middlewared.plugins.velocity.vms import (PATCH_CODES, STATE, VM_FIELDS, VMID, _devices, _quota, find, group_of,
                                              velocity_state)

logger = logging.getLogger(__name__)

Action = Callable[[Any, int], Awaitable[None]]
# (requested, current) -> (transitional state, action); the action runs while the transitional state shows.
TRANSITIONS: dict[tuple[str, str], tuple[str, Action]] = {
    ("RUNNING", "STOPPED"): ("STARTING", vmbridge.start),
    ("RUNNING", "PAUSED"): ("RESUMING", vmbridge.resume),
    ("PAUSED", "RUNNING"): ("PAUSING", vmbridge.pause),
}


async def state_post(call: Call) -> dict[str, Any]:
    vm = await find(call, call.body["vmid"], "velocity.vm.view", 13110, 13100)
    return {"vmid": vm["id"], "state": velocity_state(call, vm)}


async def state_put(call: Call) -> dict[str, Any]:
    vm = await find(call, call.body["vmid"], "velocity.vm.state", 13210, 13200)
    vmid, wanted, force = vm["id"], call.body["state"], call.body.get("force", False)
    current = velocity_state(call, vm)
    if current == wanted:
        return {"vmid": vmid, "state": current}
    if wanted == "STOPPED" and current in ("RUNNING", "PAUSED", "STOPPING"):
        if not force and current == "STOPPING":
            return {"vmid": vmid, "state": current}
        if not force:
            # Graceful: a vm.stop job asks the guest, and powers it off after the VM's shutdown_timeout.
            vmbridge.stop(call.middleware, vmid)
            return {"vmid": vmid, "state": "STOPPING"}
        await _run(call, vmid, "STOPPING", vmbridge.poweroff)
    elif (wanted, current) in TRANSITIONS:
        transitional, action = TRANSITIONS[(wanted, current)]
        await _run(call, vmid, transitional, action)
    else:
        raise call.error(13220, f"{current} -> {wanted} is not a transition a user may request")
    after = await vmbridge.entry(call.middleware, vmid)
    return {"vmid": vmid, "state": velocity_state(call, after) if after else "STOPPED"}


async def _run(call: Call, vmid: int, transitional: str, action: Action) -> None:
    call.velocity.transitions[vmid] = transitional
    try:
        await action(call.middleware, vmid)
    except CallError as e:
        logger.warning("VM %s: %s failed: %s", vmid, transitional.lower(), e.errmsg)
        raise call.error(13290, f"The hypervisor refused: {e.errmsg}") from None
    finally:
        call.velocity.transitions.pop(vmid, None)


async def vm_delete(call: Call) -> None:
    vm = await find(call, call.body["vmid"], "velocity.vm.remove", 16310, 16300)
    await vmbridge.delete(call.middleware, vm["id"])


def _kept(vm: dict[str, Any], replaced: set[str], call: Call) -> list[dict[str, Any]]:
    """Devices PATCH leaves alone: kinds not given, and RAW disks outside the media pools."""
    pools = {p.path.rstrip("/") for p in call.velocity.middleware.config.velocity_pools()}
    out = []
    for device in vm["devices"]:
        a = device["attributes"]
        kind = "media" if a["dtype"] == "RAW" and str(a["path"]).rpartition("/")[0] in pools else \
            {"DISPLAY": "displays", "NIC": "nics"}.get(a["dtype"])
        if kind not in replaced:
            out.append({"id": device["id"], "attributes": a})
    return out


# What makes a new device the same as an old one: the file of a media, the network of a NIC.
SAME = {"RAW": "path", "NIC": "nic_attach", "DISPLAY": "type"}


def _reuse(old: list[dict[str, Any]], new: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """New device entries, keeping the id (and so the MAC, serial or port) of an old device that is the same."""
    pool = list(old)
    out = []
    for attributes in new:
        key = SAME[attributes["dtype"]]
        match = next((d for d in pool if d["attributes"]["dtype"] == attributes["dtype"]
                      and d["attributes"].get(key) == attributes.get(key)), None)
        if match is not None:
            pool.remove(match)
            out.append({"id": match["id"], "attributes": {**match["attributes"], **attributes}})
        else:
            out.append({"attributes": attributes})
    return out


async def vm_patch(call: Call) -> dict[str, Any]:
    vm = await find(call, call.body["vmid"], "velocity.vm.alter", 16410, 16400)
    body, vmid, gid = dict(call.body), vm["id"], group_of(call, vm["id"])
    if "disks" in body and "media" not in body:
        body["media"] = body["disks"]
    given: set[str] = {k for k in ("media", "displays", "nics") if k in body}
    cpus = body.get("cpus", vm["vcpus"] * vm["cores"] * vm["threads"])
    memory = body.get("memory_mib", body.get("memory", vm["memory"]))
    _quota(call, await vmbridge.quota_excess(call.middleware, gid, vmbridge.usage(cpus, memory), (vmid,)),
           16420, 16421)
    data: dict[str, Any] = {"autostart": body.get("autostart", vm["autostart"]), "memory": memory}
    if "cpus" in body:
        data.update(vcpus=cpus, cores=1, threads=1)
    kept_json = None
    if given:
        new, kept_json = await _devices(call, {k: body.get(k, []) for k in given}, gid, PATCH_CODES)
        old = [{"id": d["id"], "attributes": d["attributes"]} for d in vm["devices"]]
        data["devices"] = _kept(vm, given, call) + _reuse(old, new)
        if "displays" not in given:
            kept_json = None

    def extra(db: sqlite3.Connection) -> None:
        db.execute("INSERT OR IGNORE INTO velocity_vm (vm) VALUES (?)", (vmid,))
        if "rosetta" in body:
            db.execute("UPDATE velocity_vm SET rosetta = ? WHERE vm = ?", (body["rosetta"], vmid))
        if kept_json is not None:
            db.execute("UPDATE velocity_vm SET displays = ? WHERE vm = ?", (kept_json, vmid))
    await vmbridge.update(call.middleware, vmid, data)
    await vmbridge.place(call.middleware, vmid, gid, extra)
    return {"vmid": vmid}


async def console(call: Call) -> dict[str, Any]:
    vm = await find(call, call.body["vmid"], "velocity.vm.interact", 21110, 21100)
    host = call.request.host or call.middleware.config.server.host
    uri, why = vmbridge.console_uri(call.middleware, vm, call.credentials, host, call.request.secure)
    if uri is None:
        raise call.error(21120, why)
    return {"vmid": vm["id"], "uri": uri}


_VMID_ONLY = S.request("Which VM.", {"vmid": VMID}, ("vmid",))
_STATE_RESULT = S.response("The VM's state.", {"vmid": VMID, "state": STATE})

ENDPOINTS = [
    Endpoint("POST", "/v/vm/state", "A VM's state.", state_post, request=_VMID_ONLY, response=_STATE_RESULT,
             errors=(Err(403, 13100, "velocity.vm.view is needed on the VM's group"), Err(404, 13110, "No such VM")),
             audit=None),
    Endpoint("PUT", "/v/vm/state", "Request RUNNING, PAUSED or STOPPED (200 at once when already there).",
             state_put, request=S.request("The change.", {
                 "vmid": VMID, "state": {"type": "string", "enum": ["RUNNING", "PAUSED", "STOPPED"],
                                         "description": "The state wanted."},
                 "force": S.boolean("STOPPED: power off at once instead of asking the guest (which is "
                                    "powered off after the VM's shutdown_timeout when it does not stop).")},
                 ("vmid", "state")),
             response=_STATE_RESULT,
             errors=(Err(403, 13200, "velocity.vm.state is needed on the VM's group"), Err(404, 13210, "No such VM"),
                     Err(406, 13220, "The VM's current state does not allow this transition"),
                     Err(500, 13290, "The hypervisor refused the transition"))),
    Endpoint("POST", "/v/vm/console", "The web (SPICE HTML5) console of a running VM: a URI with a single-use "
             "ticket valid 5 minutes (the page itself also needs velocity.vm.view).", console, request=_VMID_ONLY,
             response=S.response("The console.", {"vmid": VMID, "uri": S.string("Open it in a browser.")}),
             errors=(Err(403, 21100, "velocity.vm.interact is needed on the VM's group"),
                     Err(404, 21110, "No such VM"), Err(409, 21120, "The VM is not running or has no web display")),
             audit=None),
    Endpoint("DELETE", "/v/vm", "Remove a VM (powered off first when running); its media stay.", vm_delete,
             request=_VMID_ONLY,
             errors=(Err(403, 16300, "velocity.vm.remove is needed on the VM's group"), Err(404, 16310, "No such VM"))),
    Endpoint("PATCH", "/v/vm", "Change a VM: lists given replace the VM's media, displays or NICs (NICs and "
             "media kept keep their MAC and serial); the rest stays.", vm_patch,
             request=S.request("The changes.", {"vmid": VMID, **VM_FIELDS}, ("vmid",)),
             response=S.response("The VM.", {"vmid": VMID}),
             errors=(Err(403, 16400, "velocity.vm.alter is needed on the VM's group"), Err(404, 16410, "No such VM"),
                     Err(404, 16411, "No such media in the group or above"), Err(404, 16414, "No such host NIC"),
                     Err(406, 16420, "The CPU quota would be exceeded"),
                     Err(406, 16421, "The memory quota would be exceeded"), Err(409, 16424, "Display names repeat"),
                     Err(406, 16425, "Unknown media mode, or media attached twice"),
                     Err(406, 16426, "Unknown NIC type"), Err(406, 16427, "A BRIDGE NIC without host"),
                     Err(406, 16428, "Unsupported display size, or more than one display"))),
]
