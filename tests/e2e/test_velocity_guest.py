"""A real guest made and driven only through the Velocity REST API: it boots from an ISO uploaded with
/m/media/upload and sees its media on the buses the attachment modes name (by serial, with their sizes)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from tests.e2e.support import wait_ready
from tests.integration.velocity_support import ROOT_PASSWORD, as_root, new_group, velocity_daemon
from tests.support import Daemon, connect, unique

__all__ = ["velocity_daemon"]

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(600)]

MIB = 1 << 20


async def test_guest_boots_from_an_uploaded_iso_and_sees_each_mode(velocity_daemon: Daemon, guest_iso: Path) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await root.ok("PUT", "/m/pool/assign", {"gid": gid, "mpid": 1, "quota": 0, "write": True, "manage": True})
        with open(guest_iso, "rb") as iso:
            uploaded = await root("PUT", "/m/media/upload", data=iso, headers={
                "x-velocity-mpid": "1", "x-velocity-gid": str(gid), "x-velocity-name": unique("guest"),
                "x-velocity-type": "ISO", "x-velocity-readonly": "true"})
        assert uploaded.status == 200 and uploaded.body["size"] == guest_iso.stat().st_size
        sizes = {"VIRTIO": 8 * MIB, "BLOCK": 4 * MIB, "USB": 2 * MIB}
        mids = {mode: (await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": gid, "name": unique(mode.lower()),
                                                                "type": "DISK", "size": size}))["mid"]
                for mode, size in sizes.items()}
        media = [{"mid": uploaded.body["mid"], "mode": "BLOCK", "readonly": True},
                 *({"mid": mid, "mode": mode, "readonly": False} for mode, mid in mids.items())]
        vmid = (await root.ok("PUT", "/v/vm/efi", {"name": unique("vguest"), "gid": gid, "cpus": 1,
                                                   "memory_mib": 256, "media": media}))["vmid"]
        try:
            async with connect(velocity_daemon) as rpc:
                await rpc.call("vm.update", vmid, {"shutdown_timeout": 30})
                assert (await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"}))["state"] == \
                    "RUNNING"
                boot = await wait_ready(rpc, vmid)
                vm = await rpc.call("vm.get_instance", vmid)
            serials = {a["path"].rpartition("/")[2]: a["serial"] for a in (d["attributes"] for d in vm["devices"])}
            by_serial = {disk["serial"]: disk for disk in boot.disks.values()}
            for mode, bus in (("VIRTIO", "virtio"), ("BLOCK", "sata"), ("USB", "usb")):
                seen = by_serial.get(serials[mids[mode]])
                assert seen == {"size": str(sizes[mode]), "bus": bus, "serial": serials[mids[mode]]}, \
                    (mode, boot.disks)
            # The read-only ISO on SATA is the guest's CD-ROM, which it booted from.
            assert any(name.startswith("sr") and disk["bus"] == "sata" for name, disk in boot.disks.items()), \
                boot.disks
            assert "WARNING" not in boot.events, boot.events
        finally:
            # The boot outlasts the authkey's 60 s: log in again.
            root = await root.as_key(None).login("root", ROOT_PASSWORD)
            for _ in range(20):  # libvirtd is shared: wait out a restart of it
                if (await root("DELETE", "/v/vm", {"vmid": vmid})).status == 200:
                    break
                await asyncio.sleep(1)
