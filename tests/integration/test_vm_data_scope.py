"""vm.snapshot.* follows the grants on the snapshot's VM (a tenant snapshots, sees and hears of its VMs only);
cloud-init secrets never reach readers."""
from __future__ import annotations

import asyncio

from tests.integration.test_auth_daemon import as_root, auth_daemon, logged_in, make_user
from tests.integration.test_rbac_matrix import NOT_AUTHORIZED, Tenancy, outcome, tenancy
from tests.support import Daemon

__all__ = ["auth_daemon", "tenancy"]


async def test_snapshots_follow_their_vm(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    t = tenancy
    async with as_root(auth_daemon) as root:
        await root.call("core.set_options", {"legacy_jobs": False})
        theirs = await root.call("vm.snapshot.create", {"vm": t.vm_b, "name": "b"})
    async with logged_in(auth_daemon, t.username, t.password) as rpc:
        await rpc.call("core.set_options", {"legacy_jobs": False})
        await rpc.call("core.subscribe", "vm.snapshot.query")
        mine = await rpc.call("vm.snapshot.create", {"vm": t.vm_a, "name": "a"})
        assert mine["vm"] == t.vm_a and mine["current"]
        await rpc.next_event(lambda e: e["params"].get("collection") == "vm.snapshot.query"
                             and e["params"]["id"] == mine["id"])
        assert [s["id"] for s in await rpc.call("vm.snapshot.query")] == [mine["id"]]
        assert await outcome(rpc, "vm.snapshot.create", {"vm": t.vm_b, "name": "x"}) == NOT_AUTHORIZED
        assert await outcome(rpc, "vm.snapshot.create", {"vm": t.vm_alone, "name": "x"}) == NOT_AUTHORIZED
        for method in ("vm.snapshot.get_instance", "vm.snapshot.revert", "vm.snapshot.delete"):
            assert await outcome(rpc, method, theirs["id"]) == NOT_AUTHORIZED, method
        async with as_root(auth_daemon) as root:
            await root.call("core.set_options", {"legacy_jobs": False})
            await root.call("vm.snapshot.delete", theirs["id"])
        await asyncio.sleep(0.5)
        assert not [e for e in rpc.events if e.get("params", {}).get("id") == theirs["id"]]
        assert (await rpc.call("vm.snapshot.revert", mine["id"]))["current"]
        assert await rpc.call("vm.snapshot.delete", mine["id"]) is True


async def test_cloud_init_secrets_stay_hidden_from_readers(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    secret = {"dtype": "CLOUD_INIT", "user_data": "#cloud-config\npassword: s3cret-ud\n"}
    async with as_root(auth_daemon) as root:
        device = await root.call("vm.device.create", {"vm": tenancy.vm_a, "attributes": secret})
        shortcut = await root.call("vm.device.create", {"vm": tenancy.vm_b, "attributes": {
            "dtype": "CLOUD_INIT", "password": "s3cret-pw"}})
        reader, reader_pw, _ = await make_user(auth_daemon, ["READONLY_ADMIN"])
    try:
        async with logged_in(auth_daemon, reader, reader_pw) as rpc:
            seen = [await rpc.call("vm.device.get_instance", d["id"]) for d in (device, shortcut)]
            vms = await rpc.call("vm.query", [["id", "in", [tenancy.vm_a, tenancy.vm_b]]])
            assert "s3cret" not in str(seen) + str(vms)
            assert seen[0]["attributes"]["user_data"] == seen[1]["attributes"]["password"] == "********"
    finally:
        async with as_root(auth_daemon) as root:
            for d in (device, shortcut):
                await root.call("vm.device.delete", d["id"])


async def test_cloud_init_user_data_stays_out_of_the_audit_log(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    async with as_root(auth_daemon) as root:
        device = await root.call("vm.device.create", {"vm": tenancy.vm_a, "attributes": {
            "dtype": "CLOUD_INIT", "user_data": "#cloud-config\npassword: audit-s3cret\n"}})
        try:
            logged = await root.call("audit.query", [["method", "=", "vm.device.create"]])
            assert logged and "audit-s3cret" not in str(logged)
        finally:
            await root.call("vm.device.delete", device["id"])
