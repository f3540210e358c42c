"""Velocity /v: VMs are vm.* records in VM groups, seen and driven the same way over REST and JSON-RPC."""
from __future__ import annotations

import asyncio
from typing import Any

import libvirt
import pytest

from tests.integration.velocity_support import Client, as_root, nat_bridge, new_group, new_user, velocity_daemon
from tests.support import Daemon, RpcError, connect, unique

__all__ = ["velocity_daemon"]


def efi(gid: int, **more: Any) -> dict[str, Any]:
    return {"name": unique("vv"), "gid": gid, "cpus": 1, "memory_mib": 64, **more}


async def wait_state(client: Client, vmid: int, wanted: str, timeout: float = 60) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while (await client.ok("POST", "/v/vm/state", {"vmid": vmid}))["state"] != wanted:
        assert asyncio.get_running_loop().time() < deadline, f"VM {vmid} never reached {wanted}"
        await asyncio.sleep(0.3)


async def test_created_over_rest_is_a_vm_record(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        body = efi(gid, displays=[{"name": "main", "width": 1280, "height": 720, "ppi": 96}],
                   nics=[{"type": "NAT"}], rosetta=True, autostart=False)
        vmid = (await root.ok("PUT", "/v/vm/efi", body))["vmid"]
        info = await root.ok("POST", "/v/vm", {"vmid": vmid})
        assert info == {"vmid": vmid, "name": body["name"], "type": "EFI", "state": "STOPPED", "cpus": 1,
                        "memory_mib": 64, "displays": [{"name": "main", "width": 1280, "height": 720, "ppi": 96}],
                        "media": [], "nics": [{"type": "NAT", "host": None}], "rosetta": True, "autostart": False}
        listed = await root.ok("POST", "/v/vm/list", {"gid": gid})
        assert listed == {"vms": [{"vmid": vmid, "name": body["name"], "cpus": 1, "memory_mib": 64,
                                   "state": "STOPPED"}]}
        async with connect(velocity_daemon) as rpc:
            vm = await rpc.call("vm.get_instance", vmid)
            assert (vm["name"], vm["memory"], vm["vcpus"]) == (body["name"], 64, 1)
            dtypes = {d["attributes"]["dtype"]: d["attributes"] for d in vm["devices"]}
            assert dtypes["DISPLAY"]["resolution"] == "1280x720"
            assert dtypes["NIC"]["nic_attach"] == velocity_daemon.nat_network  # type: ignore[attr-defined]
            assert dtypes["NIC"]["mac"]  # chosen once, at creation
            assert vmid in (await rpc.call("vm_group.get_instance", gid))["vms"]
        # The daemon defined and started its NAT network for the NAT NIC.
        assert network_active(velocity_daemon.nat_network)  # type: ignore[attr-defined]
        # BRIDGE on the configured host NIC (the NAT network's bridge exists now).
        bridged = (await root.ok("PUT", "/v/vm/efi", efi(gid, nics=[{"type": "BRIDGE", "host": 1}])))["vmid"]
        assert (await root.ok("POST", "/v/vm", {"vmid": bridged}))["nics"] == [{"type": "BRIDGE", "host": 1}]
        async with connect(velocity_daemon) as rpc:
            nic = (await rpc.call("vm.get_instance", bridged))["devices"][0]["attributes"]
            assert nic["nic_attach"] == nat_bridge(velocity_daemon.nat_network)  # type: ignore[attr-defined]
        assert (await root.ok("POST", "/v/nic/list"))["host_nics"] == [
            {"nicid": 1, "description": "the NAT network's bridge",
             "identifier": nat_bridge(velocity_daemon.nat_network)}]  # type: ignore[attr-defined]


def network_active(name: str) -> bool:
    conn = libvirt.open("qemu:///system")
    try:
        return bool(conn.networkLookupByName(name).isActive())
    finally:
        conn.close()


async def test_vm_made_over_json_rpc_shows_at_once(velocity_daemon: Daemon) -> None:
    """Velocity showed new VMs only after a restart; here a vm.* record in a group is a Velocity VM at once."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        async with connect(velocity_daemon) as rpc:
            vm = await rpc.call("vm.create", {"name": unique("rpc"), "memory": 64, "autostart": False})
            await rpc.call("vm_group.update", gid, {"vms": [vm["id"]]})
        assert [v["vmid"] for v in (await root.ok("POST", "/v/vm/list", {"gid": gid}))["vms"]] == [vm["id"]]
        assert (await root.ok("POST", "/v/vm/state", {"vmid": vm["id"]}))["state"] == "STOPPED"
        assert (await root.ok("POST", "/v/vm", {"vmid": vm["id"]}))["rosetta"] is False
        made = (await root.ok("PUT", "/v/vm/efi", efi(gid)))["vmid"]
        assert made in [v["vmid"] for v in (await root.ok("POST", "/v/vm/list", {"gid": gid}))["vms"]]
        assert (await root.ok("POST", "/v/vm/state", {"vmid": made}))["state"] == "STOPPED"
        # The JSON-RPC VM started over REST: the same state on both sides.
        await root.ok("PUT", "/v/vm/state", {"vmid": vm["id"], "state": "RUNNING"})
        await wait_state(root, vm["id"], "RUNNING")
        async with connect(velocity_daemon) as rpc:
            assert (await rpc.call("vm.status", vm["id"]))["state"] == "RUNNING"
            await root.ok("PUT", "/v/vm/state", {"vmid": vm["id"], "state": "STOPPED", "force": True})
            assert (await rpc.call("vm.status", vm["id"]))["state"] == "STOPPED"


async def test_state_changes_both_ways(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        vmid = (await root.ok("PUT", "/v/vm/efi", efi(gid)))["vmid"]
        async with connect(velocity_daemon) as rpc:
            await rpc.call("vm.update", vmid, {"shutdown_timeout": 5})
            await rpc.call("core.subscribe", "vm.query")
            await rpc.call("vm.start", vmid)  # JSON-RPC start, seen over REST
            await wait_state(root, vmid, "RUNNING")
            assert (await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"}))["state"] == "RUNNING"
            paused = await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "PAUSED"})
            assert paused == {"vmid": vmid, "state": "PAUSED"}
            await rpc.next_event(lambda e: e.get("params", {}).get("id") == vmid
                                 and e["params"].get("fields", {}).get("status", {}).get("state") == "SUSPENDED")
            assert (await rpc.call("vm.status", vmid))["state"] == "SUSPENDED"
            assert (await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"}))["state"] == "RUNNING"
            # A graceful stop the firmware ignores ends by power-off after shutdown_timeout, not stuck.
            stopping = await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "STOPPED"})
            assert stopping["state"] == "STOPPING"
            assert (await root.ok("POST", "/v/vm/state", {"vmid": vmid}))["state"] == "STOPPING"
            refused = await root("PUT", "/v/vm/state", {"vmid": vmid, "state": "PAUSED"})
            assert (refused.status, refused.code) == (406, 13220)
            await wait_state(root, vmid, "STOPPED", timeout=60)
            await rpc.next_event(lambda e: e.get("params", {}).get("id") == vmid
                                 and e["params"].get("fields", {}).get("status", {}).get("state") == "STOPPED")
            assert (await rpc.call("vm.status", vmid))["state"] == "STOPPED"
            assert (await root("PUT", "/v/vm/state", {"vmid": vmid, "state": "PAUSED"})).code == 13220
            assert (await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "STOPPED"}))["state"] == "STOPPED"
            await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"})
            forced = await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "STOPPED", "force": True})
            assert forced["state"] == "STOPPED"
        assert (await root("PUT", "/v/vm/state", {"vmid": 999999, "state": "RUNNING"})).code == 13210
        assert (await root("POST", "/v/vm/state", {"vmid": 999999})).code == 13110
        assert (await root("PUT", "/v/vm/state", {"vmid": vmid, "state": "STARTING"})).code == 13231


async def test_no_self_grant_through_vm_info(velocity_daemon: Daemon) -> None:
    """Velocity granted velocity.vm.view to whoever asked POST /v/vm; here asking gives a 404 and nothing else."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        vmid = (await root.ok("PUT", "/v/vm/efi", efi(gid)))["vmid"]
        uid, user = await new_user(root)
        for _ in range(2):
            answer = await user("POST", "/v/vm", {"vmid": vmid})
            assert (answer.status, answer.code) == (404, 16110)
        assert (await user("POST", "/v/vm/list", {"gid": gid})).code == 17100
        assert (await user("POST", "/v/vm/state", {"vmid": vmid})).code == 13100
        assert (await root.ok("POST", "/u/user", {"uid": uid}))["memberships"] == []


async def test_permissions_checked_on_the_vms_group(velocity_daemon: Daemon) -> None:
    """Velocity accepted vm.create/state/view held on any group; here only on the target group (or above)."""
    async with as_root(velocity_daemon) as root:
        mine, other = await new_group(root), await new_group(root)
        theirs = (await root.ok("PUT", "/v/vm/efi", efi(other)))["vmid"]
        _, user = await new_user(root, {mine: ["velocity.vm.create", "velocity.vm.view", "velocity.vm.state",
                                               "velocity.vm.remove", "velocity.vm.alter"]})
        sub = await new_group(root, mine)
        own = (await user.ok("PUT", "/v/vm/efi", efi(sub)))["vmid"]  # inherited onto a subgroup
        assert (await user.ok("POST", "/v/vm", {"vmid": own}))["vmid"] == own
        assert (await user("PUT", "/v/vm/efi", efi(other))).code == 12200
        assert (await user("POST", "/v/vm", {"vmid": theirs})).code == 16110
        assert (await user("PUT", "/v/vm/state", {"vmid": theirs, "state": "RUNNING"})).code == 13200
        assert (await user("DELETE", "/v/vm", {"vmid": theirs})).code == 16300
        assert (await user("PATCH", "/v/vm", {"vmid": theirs, "cpus": 2})).code == 16400
        async with connect(velocity_daemon) as rpc:  # vm.view reads the same VMs over JSON-RPC
            assert (await rpc.call("vm.get_instance", own))["id"] == own
        await user.ok("DELETE", "/v/vm", {"vmid": own})
        assert (await user("DELETE", "/v/vm", {"vmid": own})).code == 16310


async def test_create_refusals_leave_nothing_behind(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        taken = efi(gid)
        await root.ok("PUT", "/v/vm/efi", taken)
        async with connect(velocity_daemon) as rpc:
            before = await rpc.call("vm.query", [], {"count": True})
        cases = [
            (efi(999999), 404, 12210),
            ({**taken}, 409, 12223),
            (efi(gid, media=[{"mid": "no-such-media", "mode": "VIRTIO"}]), 404, 12211),
            (efi(gid, media=[{"mid": "x", "mode": "FLOPPY"}]), 406, 12225),
            (efi(gid, nics=[{"type": "TAP"}]), 406, 12226),
            (efi(gid, nics=[{"type": "BRIDGE"}]), 406, 12227),
            (efi(gid, nics=[{"type": "BRIDGE", "host": 42}]), 404, 12214),
            (efi(gid, displays=[{"name": "a", "width": 1000, "height": 700}]), 406, 12228),
            (efi(gid, displays=[{"name": "a", "width": 800, "height": 600}] * 2), 409, 12224),
            (efi(gid, cpus=17), 400, 12231),  # refused by vm.create's own schema, after the checks above
            (efi(gid, name="bad name!"), 400, 12231),
        ]
        for body, status, code in cases:
            answer = await root("PUT", "/v/vm/efi", body)
            assert (answer.status, answer.code) == (status, code), (body, answer)
        async with connect(velocity_daemon) as rpc:
            assert await rpc.call("vm.query", [], {"count": True}) == before


async def test_quotas_inherited_never_surpassing_the_parent(velocity_daemon: Daemon) -> None:
    """Velocity never enforced quotas; here they bound a group's whole subtree, over REST and JSON-RPC."""
    async with as_root(velocity_daemon) as root:
        parent = await new_group(root)
        child = await new_group(root, parent)
        assert (await root.ok("PATCH", "/u/group", {"gid": parent, "quotas": {"cpus": 3, "memory_mib": 256}})) == \
            {"gid": parent, "quotas": {"cpus": 3, "memory_mib": 256}}
        above = await root("PATCH", "/u/group", {"gid": child, "quotas": {"cpus": 4}})
        assert (above.status, above.code) == (406, 5420)
        await root.ok("PATCH", "/u/group", {"gid": child, "quotas": {"cpus": 2}})
        memory = await root("PUT", "/v/vm/efi", efi(child, cpus=1, memory_mib=512))
        assert (memory.status, memory.code) == (406, 12221)  # the parent's memory quota, inherited
        first = (await root.ok("PUT", "/v/vm/efi", efi(child, cpus=2)))["vmid"]
        assert (await root("PUT", "/v/vm/efi", efi(child, cpus=1))).code == 12220  # the child's own quota
        await root.ok("PUT", "/v/vm/efi", efi(parent, cpus=1))
        assert (await root("PUT", "/v/vm/efi", efi(parent, cpus=1))).code == 12220  # the parent's, subtree-wide
        assert (await root("PUT", "/v/vm/efi", efi(999999, cpus=1))).code == 12210
        assert (await root("PATCH", "/v/vm", {"vmid": first, "memory_mib": 512})).code == 16421
        assert (await root("PATCH", "/u/group", {"gid": 0, "quotas": {"cpus": 1}})).code == 5421
        _, user = await new_user(root, {child: ["velocity.group.create"]})
        assert (await user("PATCH", "/u/group", {"gid": child, "quotas": {"cpus": 9}})).code == 5400
        async with connect(velocity_daemon) as rpc:  # the same quotas over JSON-RPC
            assert (await rpc.call("vm_group.get_instance", child))["quotas"] == {"cpus": 2, "memory_mib": None}
            with pytest.raises(RpcError) as refused:
                await rpc.call("vm_group.update", child, {"quotas": {"cpus": 5}})
            assert "surpasses" in str(refused.value)
            vm = await rpc.call("vm.create", {"name": unique("rpc"), "memory": 64, "autostart": False})
            try:
                await rpc.call("vm_group.update", child, {"vms": [first, vm["id"]]})
            except Exception as e:
                assert "quota" in str(e)
            else:
                raise AssertionError("moving a VM past the quota was accepted")


async def test_patch_and_delete(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        vmid = (await root.ok("PUT", "/v/vm/efi", efi(gid, nics=[{"type": "NAT"}])))["vmid"]
        async with connect(velocity_daemon) as rpc:
            mac = (await rpc.call("vm.get_instance", vmid))["devices"][0]["attributes"]["mac"]
        await root.ok("PATCH", "/v/vm", {"vmid": vmid, "cpus": 2, "memory_mib": 128, "autostart": True,
                                         "rosetta": True, "nics": [{"type": "NAT"}, {"type": "BRIDGE", "host": 1}],
                                         "displays": [{"name": "d", "width": 800, "height": 600, "ppi": 72}]})
        info = await root.ok("POST", "/v/vm", {"vmid": vmid})
        assert (info["cpus"], info["memory_mib"], info["autostart"], info["rosetta"]) == (2, 128, True, True)
        assert info["nics"] == [{"type": "NAT", "host": None}, {"type": "BRIDGE", "host": 1}]
        assert info["displays"] == [{"name": "d", "width": 800, "height": 600, "ppi": 72}]
        async with connect(velocity_daemon) as rpc:
            nics = [d["attributes"] for d in (await rpc.call("vm.get_instance", vmid))["devices"]
                    if d["attributes"]["dtype"] == "NIC"]
            assert nics[0]["mac"] == mac  # the NAT NIC kept its MAC
            assert (await rpc.call("vm.get_instance", vmid))["autostart"] is True  # vm.*'s own autostart
        # Media: attached, then the list replaced (a media kept keeps its serial), then emptied.
        await root.ok("PUT", "/m/pool/assign", {"gid": gid, "mpid": 1, "quota": 0, "write": True, "manage": True})
        a, b = [(await root.ok("PUT", "/m/media/create", {"mpid": 1, "gid": gid, "name": unique("pm"), "type": "DISK",
                                                          "size": 1 << 20}))["mid"] for _ in range(2)]
        await root.ok("PATCH", "/v/vm", {"vmid": vmid, "media": [{"mid": a, "mode": "VIRTIO"}]})
        serial = await raw_serials(velocity_daemon, vmid)
        await root.ok("PATCH", "/v/vm", {"vmid": vmid, "media": [{"mid": a, "mode": "VIRTIO"},
                                                                 {"mid": b, "mode": "USB", "readonly": True}]})
        assert (await root.ok("POST", "/v/vm", {"vmid": vmid}))["media"] == [
            {"mid": a, "mode": "VIRTIO", "readonly": False}, {"mid": b, "mode": "USB", "readonly": True}]
        assert (await raw_serials(velocity_daemon, vmid))[0] == serial[0]
        await root.ok("PATCH", "/v/vm", {"vmid": vmid, "media": []})
        assert (await root.ok("POST", "/v/vm", {"vmid": vmid}))["media"] == []
        assert (await root.ok("POST", "/v/vm", {"vmid": vmid}))["nics"] == info["nics"]  # the rest stays
        assert (await root("PATCH", "/v/vm", {"vmid": vmid, "nics": [{"type": "X"}]})).code == 16426
        assert (await root("PATCH", "/v/vm", {"vmid": 999999})).code == 16410
        await root.ok("DELETE", "/v/vm", {"vmid": vmid})
        async with connect(velocity_daemon) as rpc:
            assert await rpc.call("vm.query", [["id", "=", vmid]]) == []


async def raw_serials(daemon: Daemon, vmid: int) -> list[str]:
    async with connect(daemon) as rpc:
        devices = (await rpc.call("vm.get_instance", vmid))["devices"]
    return [d["attributes"]["serial"] for d in devices if d["attributes"]["dtype"] == "RAW"]


async def test_console_hands_out_the_web_console(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        vmid = (await root.ok("PUT", "/v/vm/efi", efi(gid, displays=[{"name": "d", "width": 800,
                                                                       "height": 600}])))["vmid"]
        stopped = await root("POST", "/v/vm/console", {"vmid": vmid})
        assert (stopped.status, stopped.code) == (409, 21120)
        _, viewer = await new_user(root, {gid: ["velocity.vm.view"]})
        assert (await viewer("POST", "/v/vm/console", {"vmid": vmid})).code == 21100
        await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"})
        try:
            uri = (await root.ok("POST", "/v/vm/console", {"vmid": vmid}))["uri"]
            assert "/vm/display/" in uri and "auth_token=" in uri
            async with root.session.get(uri, allow_redirects=False) as page:
                assert page.status in (200, 302, 303)
        finally:
            await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "STOPPED", "force": True})
        assert (await root("POST", "/v/vm/console", {"vmid": 999999})).code == 21110


async def test_vcmd_shaped_requests(velocity_daemon: Daemon) -> None:
    """Requests as Velocity's CLI (vCMD) sends them: "//" paths, the authkey in every body, `memory` and
    `disks`, NIC host null for NAT, and a 400's text read from `reason`."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        key = str(root.key)
        vcmd = root.as_key(key, in_body=True)
        login = await root.as_key(None)("POST", "//u/auth", {"username": "root", "password": "velocity-root-pw"})
        assert login.status == 200 and {"authkey", "expires"} == set(login.body)
        await vcmd.ok("PUT", "//m/pool/assign", {"gid": gid, "mpid": 1, "quota": 1 << 30, "write": True,
                                                 "manage": True})
        pools = (await vcmd.ok("POST", "//m/pool/list", {"gid": gid}))["pools"]
        assert {"mpid", "name", "write", "manage"} <= set(pools[0])
        mid = (await vcmd.ok("PUT", "//m/media/create", {"mpid": 1, "gid": gid, "name": unique("d"),
                                                          "type": "DISK", "size": 1 << 20}))["mid"]
        vm = await vcmd.ok("PUT", "//v/vm/efi", {
            "name": unique("vcmd"), "gid": gid, "cpus": 1, "memory": 64,
            "displays": [{"name": "main", "width": 1024, "height": 768, "ppi": 72}],
            "disks": [{"mid": mid, "mode": "BLOCK", "readonly": False}],
            "nics": [{"type": "NAT", "host": None}], "autostart": False, "rosetta": False})
        info = await vcmd.ok("POST", "//v/vm", {"vmid": vm["vmid"]})
        assert (info["memory_mib"], info["media"][0]["mode"], info["nics"]) == (64, "BLOCK",
                                                                               [{"type": "NAT", "host": None}])
        await vcmd.ok("PUT", "//u/user/permission", {"gid": gid, "uid": 1, "permission": "velocity.vm.view"})
        bad = await vcmd("PUT", "//u/group", {"name": ""})
        assert bad.status == 400 and bad.body["reason"] == bad.body["message"]
        assert (await vcmd("POST", "//u/nothing")).code == 0
        assert (await root.as_key(None)("DELETE", "//u/auth", {"authkey": key})).status == 200


async def test_transitional_state_shows_while_a_start_runs(velocity_daemon: Daemon) -> None:
    """STARTING is reported to other requests while PUT /v/vm/state RUNNING is under way, then RUNNING."""
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        vmid = (await root.ok("PUT", "/v/vm/efi", efi(gid)))["vmid"]
        start = asyncio.ensure_future(root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "RUNNING"}))
        seen = []
        try:
            while not start.done():
                seen.append((await root.ok("POST", "/v/vm/state", {"vmid": vmid}))["state"])
            assert (await start)["state"] == "RUNNING"
            assert "STARTING" in seen and set(seen) <= {"STOPPED", "STARTING", "RUNNING"}, seen
            listed = (await root.ok("POST", "/v/vm/list", {"gid": gid}))["vms"]
            assert listed[0]["state"] == "RUNNING"
        finally:
            await start
            await root.ok("PUT", "/v/vm/state", {"vmid": vmid, "state": "STOPPED", "force": True})
