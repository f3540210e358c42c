"""Velocity's documented refusals not shown elsewhere: permissions checked on the target group for pools and
media too (Velocity accepted them held on any group), unknown ids, PATCH /v/vm's checks, and the dispatcher's
own errors (malformed, invalid, too large) on every endpoint."""
from __future__ import annotations

import asyncio
import json
import os

from middlewared.plugins.velocity import ENDPOINTS
from middlewared.plugins.velocity import errors as E
from tests.integration.test_velocity_media import assign, pool_dir, upload
from tests.integration.velocity_support import as_root, new_group, new_user, velocity_daemon
from tests.support import Daemon, unique

__all__ = ["velocity_daemon"]

POOL_AND_MEDIA = ["velocity.pool.list", "velocity.pool.assign", "velocity.pool.revoke", "velocity.media.create",
                  "velocity.media.list", "velocity.media.remove", "velocity.group.view", "velocity.group.remove"]


async def test_pool_and_media_permissions_count_on_the_target_group_only(velocity_daemon: Daemon) -> None:
    """Every pool and media permission held on one group, used on its sibling: each refused with its code."""
    async with as_root(velocity_daemon) as root:
        mine, theirs = await new_group(root), await new_group(root)
        for gid in (mine, theirs):
            await assign(root, gid)
        their_media = (await upload(root, theirs, b"theirs")).body["mid"]
        _, user = await new_user(root, {mine: POOL_AND_MEDIA})
        grant = {"gid": theirs, "mpid": 1, "quota": 0, "write": True, "manage": True}
        cases = [
            (await user("PUT", "/m/pool/assign", grant), 6200),
            (await user("DELETE", "/m/pool/assign", {"gid": theirs, "mpid": 1}), 6300),
            (await user("POST", "/m/pool/list", {"gid": theirs}), 7100),
            (await user("PUT", "/m/media/create", {"mpid": 1, "gid": theirs, "name": unique("d"), "type": "DISK",
                                                   "size": 1}), 8200),
            (await upload(user, theirs, b"x"), 9200),
            (await user("POST", "/m/media/list", {"gid": theirs}), 10100),
            (await user("DELETE", "/m/media", {"mid": their_media}), 19300),
            (await user("POST", "/m/media/download", {"mid": their_media}), 20100),
            (await user("POST", "/u/group", {"gid": theirs}), 5100),
            (await user("DELETE", "/u/group", {"gid": theirs}), 5300),
            (await user("POST", "/v/nic/list"), 11100),
        ]
        for answer, code in cases:
            assert (answer.status, answer.code) == (403, code), (code, answer)
        # The same permissions work on the group they are held on.
        await user.ok("POST", "/m/pool/list", {"gid": mine})
        mid = (await upload(user, mine, b"mine")).body["mid"]
        await user.ok("DELETE", "/m/media", {"mid": mid})
        assert (await root.ok("POST", "/m/media/list", {"gid": theirs}))["media"][0]["mid"] == their_media


async def test_manage_flag_and_unknown_ids(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        mid = (await upload(root, gid, b"abc")).body["mid"]
        await assign(root, gid, manage=False)  # the group may no longer add or remove media in the pool
        assert (await upload(root, gid, b"x")).code == 9201
        assert (await root("DELETE", "/m/media", {"mid": mid})).code == 19301
        missing = 999999
        cases = [
            (await root("DELETE", "/u/user/permission", {"uid": missing, "gid": gid}), 4310),
            (await root("DELETE", "/u/user/permission", {"uid": 1, "gid": missing}), 4311),
            (await root("POST", "/u/group", {"gid": missing}), 5110),
            (await root("PATCH", "/u/group", {"gid": missing, "quotas": {"cpus": 1}}), 5410),
            (await root("DELETE", "/m/pool/assign", {"gid": missing, "mpid": 1}), 6310),
            (await root("DELETE", "/m/pool/assign", {"gid": gid, "mpid": 77}), 6311),
            (await root("POST", "/m/pool/list", {"gid": missing}), 7110),
            (await root("POST", "/m/media/list", {"gid": missing}), 10110),
            (await root("POST", "/v/vm/list", {"gid": missing}), 17110),
        ]
        for answer, code in cases:
            assert (answer.status, answer.code) == (404, code), (code, answer)


async def test_patch_refusals_change_nothing(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await root.ok("PATCH", "/u/group", {"gid": gid, "quotas": {"cpus": 2}})
        vmid = (await root.ok("PUT", "/v/vm/efi", {"name": unique("vp"), "gid": gid, "cpus": 1,
                                                   "memory_mib": 64}))["vmid"]
        before = await root.ok("POST", "/v/vm", {"vmid": vmid})
        display = {"name": "d", "width": 800, "height": 600}
        cases = [
            ({"media": [{"mid": "no-such-media", "mode": "USB"}]}, 404, 16411),
            ({"nics": [{"type": "BRIDGE", "host": 42}]}, 404, 16414),
            ({"cpus": 3}, 406, 16420),
            ({"displays": [display, display]}, 409, 16424),
            ({"media": [{"mid": "x", "mode": "FLOPPY"}]}, 406, 16425),
            ({"nics": [{"type": "BRIDGE"}]}, 406, 16427),
            ({"displays": [{**display, "width": 1001}]}, 406, 16428),
        ]
        for change, status, code in cases:
            answer = await root("PATCH", "/v/vm", {"vmid": vmid, **change})
            assert (answer.status, answer.code) == (status, code), (change, answer)
        assert await root.ok("POST", "/v/vm", {"vmid": vmid}) == before


async def test_every_endpoint_answers_malformed_invalid_and_oversized_bodies(velocity_daemon: Daemon) -> None:
    """The dispatcher's own errors, with each endpoint's codes: x30, x31 and x32."""
    async with as_root(velocity_daemon) as root:
        for endpoint in ENDPOINTS:
            if endpoint.raw_body:  # the upload's body is the file: it has header errors instead
                continue
            base = E.base(endpoint.path, endpoint.method)
            malformed = await root(endpoint.method, endpoint.path, data=b"{oops")
            assert (malformed.status, malformed.code) == (400, base + E.MALFORMED), (endpoint.path, malformed)
            # A body key of the wrong type (the authkey a client may send in bodies is a string).
            invalid = await root(endpoint.method, endpoint.path, data=json.dumps({"authkey": 5}).encode())
            assert (invalid.status, invalid.code) == (400, base + E.INVALID), (endpoint.path, invalid)
            large = await root(endpoint.method, endpoint.path, data=b" " * (2 << 20))
            assert (large.status, large.code) == (413, base + E.TOO_LARGE), (endpoint.path, large)
    assert "Traceback" not in velocity_daemon.log()


async def test_a_hypervisor_refusal_is_13290_and_the_vm_stays_stopped(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        name = unique("d")
        mid = (await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": gid, "name": name, "type": "DISK",
                                                        "size": 1 << 20}))["mid"]
        vmid = (await root.ok("PUT", "/v/vm/efi", {"name": unique("vh"), "gid": gid, "cpus": 1, "memory_mib": 64,
                                                   "media": [{"mid": mid, "mode": "VIRTIO"}]}))["vmid"]
        os.unlink(pool_dir(velocity_daemon) / mid)  # the disk's file is gone behind the daemon's back
        refused = await root("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"})
        assert (refused.status, refused.code) == (500, 13290) and "does not exist" in refused.body["message"]
        # The client learns which medium, by mid and name; where the host keeps it stays in the daemon's log.
        assert f"medium {mid} ({name!r})" in refused.body["message"], refused.body
        assert str(velocity_daemon.storage) not in json.dumps(refused.body)
        assert str(pool_dir(velocity_daemon) / mid) in velocity_daemon.log()
        assert (await root.ok("POST", "/v/vm/state", {"vmid": vmid}))["state"] == "STOPPED"
    assert "Traceback" not in velocity_daemon.log()


async def test_bytes_beyond_content_length_are_not_part_of_the_upload(velocity_daemon: Daemon) -> None:
    """Velocity kept a partial row and file when a body ran past Content-Length; here the file is exactly
    Content-Length bytes, and what follows is the next request on the connection (refused as one)."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        before = set(os.listdir(pool_dir(velocity_daemon)))
        reader, writer = await asyncio.open_connection("127.0.0.1", velocity_daemon.port)
        writer.write(f"PUT /m/media/upload HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {root.key}\r\n"
                     f"x-velocity-mpid: 1\r\nx-velocity-gid: {gid}\r\nx-velocity-name: {unique('over')}\r\n"
                     "x-velocity-type: ISO\r\nx-velocity-readonly: false\r\nContent-Length: 10\r\n\r\n0123456789"
                     .encode())
        await writer.drain()
        answer = await asyncio.wait_for(reader.readuntil(b"}\n"), 30)
        writer.write(b"ABCDEFGHIJ\r\n\r\n")
        await writer.drain()
        assert b" 400 " in await asyncio.wait_for(reader.read(), 30)  # not a request: refused, connection closed
        writer.close()
        assert answer.startswith(b"HTTP/1.1 200 ") and b'"size": 10' in answer
        (mid,) = set(os.listdir(pool_dir(velocity_daemon))) - before
        assert (pool_dir(velocity_daemon) / mid).read_bytes() == b"0123456789"
        assert [m["size"] for m in (await root.ok("POST", "/m/media/list", {"gid": gid}))["media"]] == [10]


async def test_a_request_that_is_not_http_gets_aiohttps_400_and_no_traceback(velocity_daemon: Daemon) -> None:
    """The documented limit (plugin README): unparsable requests are answered below the dispatcher."""
    reader, writer = await asyncio.open_connection("127.0.0.1", velocity_daemon.port)
    writer.write(b"PUT /v/vm/state HTTP/1.1 extra\r\nHost: x\r\n\r\n")
    await writer.drain()
    answer = await asyncio.wait_for(reader.read(), 30)  # answered, then the connection is closed
    writer.close()
    assert answer.split(b" ")[1] == b"400" and b"Content-Type: text/plain" in answer
    async with as_root(velocity_daemon) as root:  # the daemon serves on
        assert isinstance((await root.ok("POST", "/v/vm/list", {"gid": 0}))["vms"], list)
    assert "Traceback" not in velocity_daemon.log()


async def test_a_medium_without_its_file_is_named_by_mid_and_name(velocity_daemon: Daemon) -> None:
    """Attaching a medium whose file was removed on the host: 404 naming the medium, on create and on PATCH."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        await assign(root, gid)
        name = unique("d")
        mid = (await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": gid, "name": name, "type": "DISK",
                                                        "size": 1 << 20}))["mid"]
        vmid = (await root.ok("PUT", "/v/vm/efi", {"name": unique("vf"), "gid": gid, "cpus": 1,
                                                   "memory_mib": 64}))["vmid"]
        os.unlink(pool_dir(velocity_daemon) / mid)
        made = await root("PUT", "/v/vm/efi", {"name": unique("vf"), "gid": gid, "cpus": 1, "memory_mib": 64,
                                               "media": [{"mid": mid, "mode": "VIRTIO"}]})
        patched = await root("PATCH", "/v/vm", {"vmid": vmid, "media": [{"mid": mid, "mode": "BLOCK"}]})
        for answer, code in ((made, 12211), (patched, 16411)):
            assert (answer.status, answer.code) == (404, code), answer
            assert answer.body["message"] == f"Media {mid} ({name!r}) has no file"
