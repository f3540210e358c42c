"""Velocity VMs <-> vm records: what PUT /v/vm/efi and PATCH /v/vm ask becomes devices, and back.

| Velocity | vm record |
|---|---|
| cpus, memory_mib | vcpus (1 core, 1 thread each), memory |
| display {width, height} | DISPLAY (SPICE, web console), resolution "WxH"; name and ppi kept beside it |
| media {mid, mode, readonly} | RAW on the media's file: USB -> bus USB, BLOCK -> AHCI (SATA), VIRTIO -> VIRTIO |
| nic NAT / BRIDGE host | NIC (VIRTIO) on the NAT libvirt network / on the configured host bridge |
"""
from __future__ import annotations

import asyncio
import json
import os
from dataclasses import dataclass
from typing import Any

from middlewared.plugins.velocity import mediastore
from middlewared.plugins.velocity.endpoint import Call

MODES = {"USB": "USB", "BLOCK": "AHCI", "VIRTIO": "VIRTIO"}
BUS_MODES = {bus: mode for mode, bus in MODES.items()}
NIC_TYPES = ("NAT", "BRIDGE")
# The video resolutions a DISPLAY device offers (vm schemas); Velocity's displays must be one of them.
SIZES = frozenset(("1920x1200", "1920x1080", "1600x1200", "1600x900", "1400x1050", "1280x1024", "1280x720",
                   "1024x768", "800x600", "640x480"))


@dataclass(frozen=True)
class Codes:
    """The error codes of the endpoint translating (PUT /v/vm/efi and PATCH /v/vm differ)."""

    media_missing: int
    nic_missing: int
    display_twice: int
    mode: int
    nic_type: int
    no_host: int
    size: int


async def displays(call: Call, given: list[dict[str, Any]], codes: Codes) -> tuple[list[dict[str, Any]], str]:
    """DISPLAY attributes and the JSON kept beside them (names, ppi)."""
    names = [d["name"] for d in given]
    if len(set(names)) != len(names):
        raise call.error(codes.display_twice, "Display names must be unique in a VM")
    if len(given) > 1:
        raise call.error(codes.size, "A VM has at most one display here")
    out = []
    for display in given:
        size = f"{display['width']}x{display['height']}"
        if size not in SIZES:
            raise call.error(codes.size, f"Display size {size} is not offered; use one of {', '.join(sorted(SIZES))}")
        out.append({"dtype": "DISPLAY", "type": "SPICE", "resolution": size, "web": True})
    return out, json.dumps([{"name": d["name"], "ppi": d.get("ppi", 0)} for d in given])


async def media(call: Call, given: list[dict[str, Any]], gid: int, codes: Codes) -> list[dict[str, Any]]:
    """RAW attributes of media attachments (media of the VM's group or an ancestor); read-only when the
    attachment, the media or the group's pool assignment says so."""
    out, seen = [], set()
    lineage = {0, *call.velocity.index.ancestors(gid or None)}
    grants = await mediastore.grants(call.middleware, gid)
    for attachment in given:
        mode, mid = attachment["mode"], attachment["mid"]
        if mode not in MODES or mid in seen:
            raise call.error(codes.mode, f"Mode {mode} is not one of USB, BLOCK, VIRTIO" if mode not in MODES
                             else f"Media {mid} is attached twice")
        seen.add(mid)
        rows = await mediastore.media(call.middleware, mid=mid)
        path = mediastore.file_path(call.velocity, rows[0]) if rows else None
        if not rows or rows[0]["gid"] not in lineage or path is None:
            raise call.error(codes.media_missing, f"Media {mid} does not exist in group {gid} or above")
        if not await asyncio.to_thread(os.path.isfile, path):  # removed on the host behind the daemon's back
            raise call.error(codes.media_missing, f"Media {mid} ({rows[0]['name']!r}) has no file")
        # As /m/media/list shows it: writable only with write on the pool assigned to the VM's own group.
        writable = any(g["mpid"] == rows[0]["mpid"] and g["write"] for g in grants)
        readonly = bool(attachment.get("readonly")) or rows[0]["readonly"] or not writable
        out.append({"dtype": "RAW", "path": path, "exists": True, "type": MODES[mode], "readonly": readonly})
    return out


def nics(call: Call, given: list[dict[str, Any]], codes: Codes) -> list[dict[str, Any]]:
    """NIC attributes: NAT on the daemon's NAT network, BRIDGE on a configured host bridge."""
    bridges = {n.nicid: n.bridge for n in call.velocity.config.nics}
    out = []
    for nic in given:
        if nic["type"] not in NIC_TYPES:
            raise call.error(codes.nic_type, f"NIC type {nic['type']} is not one of NAT, BRIDGE")
        if nic["type"] == "NAT":
            attach = call.velocity.config.nat_network
        elif nic.get("host") is None:
            raise call.error(codes.no_host, "A BRIDGE NIC needs host (a NICID from /v/nic/list)")
        elif nic["host"] not in bridges:
            raise call.error(codes.nic_missing, f"Host NIC {nic['host']} does not exist")
        else:
            attach = bridges[nic["host"]]
        out.append({"dtype": "NIC", "type": "VIRTIO", "nic_attach": attach})
    return out


def info(call: Call, vm: dict[str, Any], extra: dict[str, Any] | None, state: str) -> dict[str, Any]:
    """The /v/vm answer for a vm.query entry (and its Velocity extras)."""
    kept = json.loads(extra["displays"]) if extra else []
    bridges = {n.bridge: n.nicid for n in call.velocity.config.nics}
    pool_dirs = {p.path.rstrip("/"): p.mpid for p in call.velocity.middleware.config.velocity_pools()}
    out: dict[str, Any] = {"displays": [], "media": [], "nics": []}
    for device in vm["devices"]:
        a = device["attributes"]
        if a["dtype"] == "DISPLAY":
            named = kept[len(out["displays"])] if len(out["displays"]) < len(kept) else {}
            width, _, height = str(a.get("resolution", "1024x768")).partition("x")
            out["displays"].append({"name": named.get("name", f"display{len(out['displays'])}"),
                                    "width": int(width), "height": int(height), "ppi": named.get("ppi", 0)})
        elif a["dtype"] == "RAW" and str(a["path"]).rpartition("/")[0] in pool_dirs:
            out["media"].append({"mid": str(a["path"]).rpartition("/")[2], "mode": BUS_MODES.get(a["type"], "BLOCK"),
                                 "readonly": bool(a.get("readonly"))})
        elif a["dtype"] == "NIC":
            attach = a.get("nic_attach")
            out["nics"].append({"type": "NAT", "host": None} if attach == call.velocity.config.nat_network
                               else {"type": "BRIDGE", "host": bridges.get(attach)})
    return {"vmid": vm["id"], "name": vm["name"], "type": "EFI", "state": state, "cpus": cpus(vm),
            "memory_mib": vm["memory"], **out, "rosetta": bool(extra and extra["rosetta"]),
            "autostart": vm["autostart"]}


def cpus(vm: dict[str, Any]) -> int:
    return int(vm["vcpus"] * vm["cores"] * vm["threads"])
