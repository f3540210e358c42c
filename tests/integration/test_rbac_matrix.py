"""Every public method against every kind of caller: anonymous, READONLY_ADMIN, VM_READ, and a tenant whose
VM_DEVICE_WRITE is scoped to VM group A (with a child group), who must not see, touch or hear of group B's VM."""
from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any, Iterator

import pytest

from middlewared import roles as roles_
from tests.integration.test_auth_daemon import as_root, auth_daemon, connect, logged_in, make_user
from tests.support import Daemon, Rpc, RpcError, unique

__all__ = ["auth_daemon"]

# Calls that would end or disturb the calling session itself.
SKIP = frozenset({"auth.logout"})
NOT_AUTHENTICATED, NOT_AUTHORIZED = 207, 13


async def outcome(rpc: Rpc, method: str, *params: Any) -> int | None:
    """The errno a call fails with, or None when it succeeds."""
    try:
        await rpc.call(method, *params, timeout=60)
    except RpcError as e:
        return int(e.errno) if e.errno is not None else -1
    return None


async def _methods(d: Daemon) -> dict[str, Any]:
    async with as_root(d) as root:
        result: dict[str, Any] = await root.call("core.get_methods")
        return result


@pytest.fixture(scope="module")
def methods(auth_daemon: Daemon) -> dict[str, Any]:
    """Every public method, as root lists them."""
    return asyncio.run(_methods(auth_daemon))


async def test_anonymous_tcp_is_refused_everything_but_the_public_methods(auth_daemon: Daemon,
                                                                         methods: dict[str, Any]) -> None:
    public = sorted(n for n, m in methods.items() if not m["authentication_required"])
    assert public == ["auth.login", "auth.login_ex", "auth.login_with_api_key", "auth.login_with_token",
                      "auth.mechanism_choices", "core.ping", "core.set_options"]
    async with connect(auth_daemon.url) as anon:
        for name, method in sorted(methods.items()):
            errno_ = await outcome(anon, name)
            if method["authentication_required"]:
                assert errno_ == NOT_AUTHENTICATED, name
            else:
                assert errno_ != NOT_AUTHENTICATED, name


@pytest.mark.parametrize("granted", [["READONLY_ADMIN"], ["VM_READ"]])
async def test_roles_decide_every_method(auth_daemon: Daemon, methods: dict[str, Any], granted: list[str]) -> None:
    """Methods the roles do not cover answer EACCES; the others are not refused (they may fail otherwise)."""
    held = roles_.expand([*granted, roles_.AUTHENTICATED])
    username, password, _ = await make_user(auth_daemon, granted)
    refused = []
    async with logged_in(auth_daemon, username, password) as rpc:
        for name, method in sorted(methods.items()):
            if name in SKIP or not method["authentication_required"]:
                continue
            errno_ = await outcome(rpc, name)
            if roles_.allows(held, method["roles"]):
                assert errno_ not in (NOT_AUTHORIZED, NOT_AUTHENTICATED), name
            else:
                assert errno_ == NOT_AUTHORIZED, name
                refused.append(name)
    assert "vm.start" in refused and "vm.create" in refused and "user.create" in refused
    if granted == ["VM_READ"]:
        assert "user.query" in refused and "audit.query" in refused


class Tenancy:
    """Two VM groups (A with a child group, B), a VM in each place, a tenant holding VM_DEVICE_WRITE on A
    (through an account group) and VM_READ on one more VM."""

    def __init__(self) -> None:
        self.vm_a = self.vm_child = self.vm_b = self.vm_alone = 0
        self.username = self.password = ""


@pytest.fixture(scope="module")
def tenancy(auth_daemon: Daemon) -> Iterator[Tenancy]:
    t = Tenancy()
    vms = asyncio.run(_set_up(auth_daemon, t))
    yield t
    asyncio.run(_delete_vms(auth_daemon, vms))


async def _delete_vms(d: Daemon, vms: list[dict[str, Any]]) -> None:
    async with as_root(d) as root:
        for vm in vms:
            await root.call("vm.delete", vm["id"], {"force": True})


async def _set_up(auth_daemon: Daemon, t: Tenancy) -> list[dict[str, Any]]:
    async with as_root(auth_daemon) as root:
        vms = [await root.call("vm.create", {"name": unique("scope"), "memory": 64, "autostart": False,
                                             "shutdown_timeout": 5}) for _ in range(4)]
        t.vm_a, t.vm_child, t.vm_b, t.vm_alone = (v["id"] for v in vms)
        group_a = await root.call("vm_group.create", {"name": unique("A"), "vms": [t.vm_a]})
        await root.call("vm_group.create", {"name": "child", "parent": group_a["id"], "vms": [t.vm_child]})
        await root.call("vm_group.create", {"name": unique("B"), "vms": [t.vm_b]})
        t.username, t.password, user_id = await make_user(auth_daemon)
        tenants = await root.call("group.create", {"name": unique("tenants"), "users": [user_id]})
        await root.call("acl.create", {"group": tenants["id"], "role": "VM_DEVICE_WRITE", "vm_group": group_a["id"]})
        await root.call("acl.create", {"user": user_id, "role": "VM_READ", "vm": t.vm_alone})
    return vms


async def test_tenant_sees_only_its_vms(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    t = tenancy
    async with logged_in(auth_daemon, t.username, t.password) as rpc:
        seen = {vm["id"] for vm in await rpc.call("vm.query")}
        assert seen == {t.vm_a, t.vm_child, t.vm_alone}
        assert await rpc.call("vm.query", [["id", "=", t.vm_b]]) == []
        assert await rpc.call("vm.query", [], {"count": True}) == 3
        assert (await rpc.call("vm.get_instance", t.vm_child))["id"] == t.vm_child
        scoped = (await rpc.call("auth.me"))["privilege"]["scoped"]
        assert {(s["scope_type"], s["scope_id"]) for s in scoped} >= {("VM", t.vm_alone)}
        # Each grant lists the VMs it covers now (a group's subtree included), for per-VM gating in clients.
        covered = {s["scope_type"]: set(s["vms"]) for s in scoped}
        assert covered == {"VM": {t.vm_alone}, "VM_GROUP": {t.vm_a, t.vm_child}}


async def test_tenant_cannot_touch_other_vms(auth_daemon: Daemon, tenancy: Tenancy,
                                             methods: dict[str, Any]) -> None:
    """Every vm.* method taking a VM id refuses group B's VM; reading ones work on the tenant's VMs."""
    t = tenancy
    by_id = sorted(n for n, m in methods.items() if n.rpartition(".")[0] == "vm" and m["params"]
                   and m["params"][0].get("type") == "integer")
    assert {"vm.start", "vm.stop", "vm.update", "vm.delete", "vm.get_instance", "vm.clone"} <= set(by_id)
    async with logged_in(auth_daemon, t.username, t.password) as rpc:
        for name in by_id:
            assert await outcome(rpc, name, t.vm_b) == NOT_AUTHORIZED, name
            if not methods[name]["roles"] or all(r.endswith("_READ") for r in methods[name]["roles"]):
                assert await outcome(rpc, name, t.vm_a) not in (NOT_AUTHORIZED, NOT_AUTHENTICATED), name
        assert await outcome(rpc, "vm.update", t.vm_alone, {"description": "read only here"}) == NOT_AUTHORIZED
        assert await outcome(rpc, "vm.create", {"name": unique("t"), "memory": 64}) == NOT_AUTHORIZED
        await rpc.call("core.set_options", {"legacy_jobs": False})  # core.bulk answers with its result
        [bulk] = await rpc.call("core.bulk", "vm.start", [[t.vm_b]])
        assert "Not authorized" in bulk["error"]
        updated = await rpc.call("vm.update", t.vm_child, {"description": "mine"})
        assert updated["description"] == "mine"


async def test_tenant_hears_only_of_its_vms(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    t = tenancy
    async with AsyncExitStack() as stack:
        rpc = await stack.enter_async_context(logged_in(auth_daemon, t.username, t.password))
        root = await stack.enter_async_context(as_root(auth_daemon))
        await rpc.call("core.subscribe", "vm.query")
        await root.call("vm.update", t.vm_b, {"description": unique("b")})
        await root.call("vm.update", t.vm_a, {"description": unique("a")})
        event = await rpc.next_event(lambda e: e.get("method") == "collection_update")
        assert event["params"]["id"] == t.vm_a
        await asyncio.sleep(0.5)
        assert not [e for e in rpc.events if e.get("params", {}).get("id") == t.vm_b]
        assert (await outcome(rpc, "core.subscribe", "user.query")) == NOT_AUTHORIZED


async def test_bulk_result_jobs_stay_private(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    """A tenant's own jobs are visible to it; root's jobs are not."""
    t = tenancy
    async with as_root(auth_daemon) as root:
        root_job = await root.call("core.bulk", "core.ping", [[]])
    async with logged_in(auth_daemon, t.username, t.password) as rpc:
        own = await rpc.call("core.bulk", "core.ping", [[]])
        ids = {j["id"] for j in await rpc.call("core.get_jobs")}
        assert own in ids and root_job not in ids


async def test_devices_follow_their_vm_and_secrets_stay_hidden(auth_daemon: Daemon, tenancy: Tenancy) -> None:
    """vm.device.* is scoped through the device's VM; a display password never reaches mere readers."""
    t = tenancy
    display = {"dtype": "DISPLAY", "password": "display-secret"}
    async with as_root(auth_daemon) as root:
        mine = await root.call("vm.device.create", {"vm": t.vm_a, "attributes": display})
        theirs = await root.call("vm.device.create", {"vm": t.vm_b, "attributes": display})
        reader, reader_pw, _ = await make_user(auth_daemon, ["READONLY_ADMIN"])
    try:
        async with logged_in(auth_daemon, t.username, t.password) as rpc:
            ids = {d["id"] for d in await rpc.call("vm.device.query")}
            assert mine["id"] in ids and theirs["id"] not in ids
            assert await outcome(rpc, "vm.device.get_instance", theirs["id"]) == NOT_AUTHORIZED
            assert await outcome(rpc, "vm.device.delete", theirs["id"]) == NOT_AUTHORIZED
            assert await outcome(rpc, "vm.device.create", {"vm": t.vm_b, "attributes": display}) == NOT_AUTHORIZED
            assert await outcome(rpc, "vm.device.update", mine["id"], {"vm": t.vm_b}) == NOT_AUTHORIZED
            own = await rpc.call("vm.device.get_instance", mine["id"])
            assert own["attributes"] == mine["attributes"]  # as root sees it: writers see what they write
        async with logged_in(auth_daemon, reader, reader_pw) as rpc:
            seen = await rpc.call("vm.device.get_instance", mine["id"])
            assert seen["attributes"]["password"] == "********"
    finally:
        async with as_root(auth_daemon) as root:
            for device in (mine, theirs):
                await root.call("vm.device.delete", device["id"])
