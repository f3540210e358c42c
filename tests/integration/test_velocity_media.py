"""Velocity /m: pools from the configuration, grants with quotas, media allocated, uploaded (streamed),
listed, downloaded and removed; media attached to VMs in the three modes with the read-only rules."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path
from typing import Any

from tests.integration.velocity_support import Answer, Client, as_root, new_group, new_user, velocity_daemon
from tests.support import Daemon, connect, unique

__all__ = ["velocity_daemon"]

MIB = 1 << 20


def pool_dir(daemon: Daemon) -> Path:
    return daemon.storage / "pool1"


async def assign(root: Client, gid: int, quota: int = 0, write: bool = True, manage: bool = True) -> None:
    await root.ok("PUT", "/m/pool/assign", {"gid": gid, "mpid": 1, "quota": quota, "write": write, "manage": manage})


async def upload(client: Client, gid: int, data: bytes, name: str | None = None, readonly: bool = False,
                 **headers: str) -> Answer:
    return await client("PUT", "/m/media/upload", data=data, headers={
        "x-velocity-mpid": "1", "x-velocity-gid": str(gid), "x-velocity-name": name or unique("m"),
        "x-velocity-type": "ISO", "x-velocity-readonly": "true" if readonly else "false", **headers})


async def test_pool_assign_stores_manage_from_manage(velocity_daemon: Daemon) -> None:
    """Velocity stored `manage` from `write`; here each flag is kept as given."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        for write, manage in ((True, False), (False, True)):
            await assign(root, gid, 123, write, manage)
            assert (await root.ok("POST", "/m/pool/list", {"gid": gid}))["pools"] == [
                {"mpid": 1, "name": "local", "write": write, "manage": manage, "quota": 123}]
        assert (await root("PUT", "/m/pool/assign", {"gid": gid, "mpid": 9, "quota": 0, "write": True,
                                                     "manage": True})).code == 6211
        assert (await root("PUT", "/m/pool/assign", {"gid": 999999, "mpid": 1, "quota": 0, "write": True,
                                                     "manage": True})).code == 6210
        _, user = await new_user(root, {gid: ["velocity.pool.list"]})
        assert (await user("PUT", "/m/pool/assign", {"gid": gid, "mpid": 1, "quota": 0, "write": True,
                                                     "manage": True})).code == 6200
        assert len((await user.ok("POST", "/m/pool/list", {"gid": gid}))["pools"]) == 1
        await root.ok("DELETE", "/m/pool/assign", {"gid": gid, "mpid": 1})
        assert (await user.ok("POST", "/m/pool/list", {"gid": gid}))["pools"] == []
        assert (await user("DELETE", "/m/pool/assign", {"gid": gid, "mpid": 1})).code == 6300


async def test_media_create_sizes_exact_and_listed(velocity_daemon: Daemon) -> None:
    """Velocity wrote one MiB too many, crashed on exact MiB multiples, and listed every size as 0."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        sizes = {}
        for size in (0, MIB, 3 * MIB, 1234567):
            created = await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": gid, "name": unique("d"),
                                                               "type": "DISK", "size": size})
            assert created["size"] == size
            assert (pool_dir(velocity_daemon) / created["mid"]).stat().st_size == size
            sizes[created["mid"]] = size
        listed = (await root.ok("POST", "/m/media/list", {"gid": gid}))["media"]
        assert {m["mid"]: m["size"] for m in listed} == sizes
        assert all(m["readonly"] is False and m["mpid"] == 1 for m in listed)


async def test_media_create_refusals(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        body = {"mpid": 1, "gid": gid, "name": unique("d"), "type": "DISK", "size": 10}
        assert (await root("PUT", "/m/media/create", body)).code == 8201  # not assigned: no manage
        await assign(root, gid, quota=100, manage=False)
        assert (await root("PUT", "/m/media/create", body)).code == 8201
        await assign(root, gid, quota=100)
        await root.ok("PUT", "/m/media/create", body)
        assert (await root("PUT", "/m/media/create", body)).code == 8220
        over = await root("PUT", "/m/media/create", {**body, "name": unique("d"), "size": 91})
        assert (over.status, over.code) == (406, 8221)
        assert (await root("PUT", "/m/media/create", {**body, "mpid": 7})).code == 8211
        assert (await root("PUT", "/m/media/create", {**body, "gid": 999999})).code == 8210
        _, user = await new_user(root, {gid: ["velocity.media.list"]})
        assert (await user("PUT", "/m/media/create", {**body, "name": "x"})).code == 8200
        assert (await user("POST", "/m/media/list", {"gid": 0})).code == 10100
        assert len((await root.ok("POST", "/m/media/list", {"gid": gid}))["media"]) == 1


async def test_upload_download_delete(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid, write=False)
        data = os.urandom(3 * MIB + 17)
        answer = await upload(root, gid, data, readonly=True)
        assert answer.status == 200 and answer.body["size"] == len(data)
        mid = answer.body["mid"]
        assert (pool_dir(velocity_daemon) / mid).read_bytes() == data
        listed = (await root.ok("POST", "/m/media/list", {"gid": gid}))["media"]
        assert [(m["mid"], m["size"], m["readonly"]) for m in listed] == [(mid, len(data), True)]
        download = await root.session.post(f"{root.base}/m/media/download", json={"mid": mid},
                                           headers={"Authorization": f"Bearer {root.key}"})
        assert download.status == 200 and await download.read() == data
        # The old header form of the key (Velocity's upload used it).
        old_style = await upload(root.as_key(None), gid, b"abc", **{"x-velocity-authkey": str(root.key)})
        assert old_style.status == 200
        await root.ok("DELETE", "/m/media", {"mid": mid})
        assert not (pool_dir(velocity_daemon) / mid).exists()
        assert (await root("DELETE", "/m/media", {"mid": mid})).code == 19310
        assert (await root("POST", "/m/media/download", {"mid": mid})).code == 20110


async def test_upload_header_and_length_errors(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        for header, code in (("x-velocity-mpid", 9210), ("x-velocity-gid", 9211), ("x-velocity-name", 9212),
                             ("x-velocity-type", 9213), ("x-velocity-readonly", 9214)):
            answer = await upload(root, gid, b"x", **{header: ""})
            assert (answer.status, answer.code) == (400, code)

        async def chunks() -> Any:
            yield b"no length"
        unsized = await upload(root, gid, chunks())  # type: ignore[arg-type]
        assert (unsized.status, unsized.code) == (411, 9215)
        assert (await upload(root, 999999, b"x")).code == 9217
        assert (await upload(root, gid, b"x", **{"x-velocity-mpid": "5"})).code == 9218
        name = unique("m")
        await upload(root, gid, b"x", name=name)
        assert (await upload(root, gid, b"y", name=name)).code == 9220
        assert (await upload(root.as_key(None), gid, b"x")).code == 100


async def test_upload_cut_short_leaves_nothing(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        before = set(os.listdir(pool_dir(velocity_daemon)))
        reader, writer = await asyncio.open_connection("127.0.0.1", velocity_daemon.port)
        writer.write(f"PUT /m/media/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root.key}\r\n"
                     f"x-velocity-mpid: 1\r\nx-velocity-gid: {gid}\r\nx-velocity-name: {unique('cut')}\r\n"
                     f"x-velocity-type: ISO\r\nx-velocity-readonly: false\r\nContent-Length: {8 * MIB}\r\n\r\n"
                     .encode())
        writer.write(os.urandom(4 * MIB))
        await writer.drain()
        await asyncio.sleep(0.5)
        writer.close()
        for _ in range(50):
            await asyncio.sleep(0.1)
            if set(os.listdir(pool_dir(velocity_daemon))) == before:
                break
        assert set(os.listdir(pool_dir(velocity_daemon))) == before
        assert (await root.ok("POST", "/m/media/list", {"gid": gid}))["media"] == []
        async with connect(velocity_daemon) as rpc:
            assert await rpc.call("core.ping") == "pong"
    assert "Traceback" not in velocity_daemon.log(), velocity_daemon.log()[-2500:]


async def test_concurrent_uploads_race_for_one_quota(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid, quota=3 * MIB)
        answers = await asyncio.gather(*(upload(root, gid, os.urandom(2 * MIB)) for _ in range(3)))
        assert sorted(a.status for a in answers) == [200, 406, 406]
        assert {a.code for a in answers if a.status == 406} == {9221}
        listed = (await root.ok("POST", "/m/media/list", {"gid": gid}))["media"]
        assert [m["size"] for m in listed] == [2 * MIB]
        assert len([n for n in os.listdir(pool_dir(velocity_daemon)) if n.endswith(".part")]) == 0


async def test_media_in_three_modes_with_read_only_rules(velocity_daemon: Daemon) -> None:
    """USB, BLOCK (refused by Velocity) and VIRTIO are three buses; read-only comes from the media, the pool
    grant's write flag or the attachment."""
    async with as_root(velocity_daemon) as root:
        gid, other = await new_group(root), await new_group(root)
        await assign(root, gid)
        mids = [(await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": gid, "name": unique("d"),
                                                          "type": "DISK", "size": MIB}))["mid"] for _ in range(3)]
        ro_media = (await upload(root, gid, b"\0" * 512, readonly=True)).body["mid"]
        media = [{"mid": mids[0], "mode": "USB", "readonly": False},
                 {"mid": mids[1], "mode": "BLOCK", "readonly": True},
                 {"mid": mids[2], "mode": "VIRTIO"}, {"mid": ro_media, "mode": "VIRTIO", "readonly": False}]
        vmid = (await root.ok("PUT", "/v/vm/efi", {"name": unique("vm"), "gid": gid, "cpus": 1, "memory_mib": 64,
                                                   "media": media}))["vmid"]
        info = await root.ok("POST", "/v/vm", {"vmid": vmid})
        assert info["media"] == [{"mid": mids[0], "mode": "USB", "readonly": False},
                                 {"mid": mids[1], "mode": "BLOCK", "readonly": True},
                                 {"mid": mids[2], "mode": "VIRTIO", "readonly": False},
                                 {"mid": ro_media, "mode": "VIRTIO", "readonly": True}]
        async with connect(velocity_daemon) as rpc:
            raws = [d["attributes"] for d in (await rpc.call("vm.get_instance", vmid))["devices"]]
            assert [(a["dtype"], a["type"]) for a in raws] == [("RAW", "USB"), ("RAW", "AHCI"), ("RAW", "VIRTIO"),
                                                               ("RAW", "VIRTIO")]
        # Without write on the pool every attachment is read-only.
        await assign(root, gid, write=False)
        vm2 = (await root.ok("PUT", "/v/vm/efi", {"name": unique("vm"), "gid": gid, "cpus": 1, "memory_mib": 64,
                                                  "disks": [{"mid": mids[2], "mode": "VIRTIO", "readonly": False}]}))
        assert (await root.ok("POST", "/v/vm", {"vmid": vm2["vmid"]}))["media"][0]["readonly"] is True
        # Another group's media cannot be attached; attached media cannot be removed.
        foreign = await root("PUT", "/v/vm/efi", {"name": unique("vm"), "gid": other, "cpus": 1, "memory_mib": 64,
                                                  "media": [{"mid": mids[0], "mode": "USB"}]})
        assert foreign.code == 12211
        assert (await root("DELETE", "/m/media", {"mid": mids[0]})).code == 19320


async def test_root_group_has_every_pool(velocity_daemon: Daemon) -> None:
    """As Velocity assigned each pool to the root group: /m/pool/list on gid 0 lists all pools."""
    async with as_root(velocity_daemon) as root:
        assert (await root.ok("POST", "/m/pool/list", {"gid": 0}))["pools"] == [
            {"mpid": 1, "name": "local", "write": True, "manage": True, "quota": 0}]
        made = await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": 0, "name": unique("root"), "type": "DISK",
                                                        "size": 10})
        assert made["mid"] in [m["mid"] for m in (await root.ok("POST", "/m/media/list", {"gid": 0}))["media"]]
        await root.ok("DELETE", "/m/media", {"mid": made["mid"]})
