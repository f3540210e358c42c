"""Velocity /u/user, /u/user/permission, /u/group: the group tree, inheritance, grant-only-what-you-hold,
and the same users, groups and grants over JSON-RPC."""
from __future__ import annotations

from tests.integration.velocity_support import as_root, new_group, new_user, velocity_daemon
from tests.support import Daemon, connect, unique

__all__ = ["velocity_daemon"]


def names(permissions: list[dict[str, object]]) -> set[object]:
    return {p["name"] for p in permissions}


async def test_users_create_list_view_remove(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        name = unique("vu")
        created = await root.ok("PUT", "/u/user", {"name": name, "password": "pw-12345678"})
        assert created == {"uid": created["uid"], "name": name}
        assert (await root("PUT", "/u/user", {"name": name, "password": "pw-12345678"})).code == 2220
        short = await root("PUT", "/u/user", {"name": unique("vu"), "password": "x"})
        assert (short.status, short.code) == (400, 2231) and "password" in short.body["message"]
        assert {"uid": created["uid"], "name": name} in (await root.ok("POST", "/u/user/list"))["users"]
        assert (await root.ok("POST", "/u/user", {"uid": created["uid"]}))["memberships"] == []
        assert (await root("POST", "/u/user", {"uid": 999999})).code == 2110
        assert (await root("DELETE", "/u/user", {"uid": 1})).code == 2320
        await root.ok("DELETE", "/u/user", {"uid": created["uid"]})
        assert (await root("DELETE", "/u/user", {"uid": created["uid"]})).code == 2310
        async with connect(velocity_daemon) as rpc:  # the same accounts as JSON-RPC's user.*
            assert not await rpc.call("user.query", [["username", "=", name]])


async def test_plain_user_may_only_see_itself(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        uid, user = await new_user(root)
        me = await user.ok("POST", "/u/user")
        assert me["uid"] == uid and me["memberships"] == []
        assert (await user("POST", "/u/user", {"uid": 1})).code == 2100
        assert (await user("POST", "/u/user/list")).code == 3100
        assert (await user("PUT", "/u/user", {"name": unique("x"), "password": "pw-12345678"})).code == 2200
        assert (await user("DELETE", "/u/user", {"uid": 1})).code == 2300
        assert (await user("PUT", "/u/group", {"name": "x", "parent_gid": 0})).code == 5200
        assert (await user.ok("POST", "/u/group/list")) == {"groups": []}


async def test_permissions_inherit_down_the_tree_not_across(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        top, other = await new_group(root), await new_group(root)
        child = await new_group(root, top)
        grandchild = await new_group(root, child)
        uid, user = await new_user(root, {top: ["velocity.group.create", "velocity.group.view"]})
        # Inherited two levels down...
        made = await user.ok("PUT", "/u/group", {"name": "made-by-user", "parent_gid": grandchild})
        assert made["parent_gid"] == grandchild
        assert (await user.ok("POST", "/u/group", {"gid": grandchild}))["gid"] == grandchild
        # ...but not onto a sibling branch, nor up to the root group.
        assert (await user("PUT", "/u/group", {"name": "x", "parent_gid": other})).code == 5200
        assert (await user("POST", "/u/group", {"gid": other})).code == 5100
        assert (await user("PUT", "/u/group", {"name": "x", "parent_gid": 0})).code == 5200
        info = await root.ok("POST", "/u/user", {"uid": uid})
        assert [(m["gid"], names(m["permissions"])) for m in info["memberships"]] == \
            [(top, {"velocity.group.create", "velocity.group.view"})]


async def test_grant_only_what_you_hold_on_that_group(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        mine, theirs = await new_group(root), await new_group(root)
        sub = await new_group(root, mine)
        _, admin = await new_user(root, {mine: ["velocity.user.assign", "velocity.user.revoke", "velocity.vm.view"],
                                         theirs: ["velocity.vm.state"]})
        target, target_client = await new_user(root)
        grant = {"uid": target, "gid": sub, "permission": "velocity.vm.view"}
        assert (await admin("PUT", "/u/user/permission", grant)).status == 200
        # Not held on that group (held elsewhere does not count: Velocity's "any group" bug).
        too_high = await admin("PUT", "/u/user/permission", {**grant, "permission": "velocity.vm.state"})
        assert (too_high.status, too_high.code) == (403, 4220)
        # assign is held on another group only.
        elsewhere = await admin("PUT", "/u/user/permission", {**grant, "gid": theirs})
        assert (elsewhere.status, elsewhere.code) == (403, 4200)
        assert (await admin("PUT", "/u/user/permission", {**grant, "uid": 999999})).code == 4210
        assert (await admin("PUT", "/u/user/permission", {**grant, "gid": 999999})).code == 4211
        assert (await admin("PUT", "/u/user/permission", {**grant, "permission": "velocity.nope"})).code == 4212
        # Granting twice is a no-op.
        assert (await admin("PUT", "/u/user/permission", grant)).status == 200
        memberships = (await target_client.ok("POST", "/u/user"))["memberships"]
        assert [(m["gid"], names(m["permissions"])) for m in memberships] == [(sub, {"velocity.vm.view"})]
        # Revoke: only on a group where revoke is held, only what the revoker holds.
        await root.ok("PUT", "/u/user/permission", {**grant, "permission": "velocity.vm.state"})
        assert (await admin("DELETE", "/u/user/permission", {**grant, "permission": "velocity.vm.state"})).code \
            == 4320
        assert (await admin("DELETE", "/u/user/permission", {**grant, "gid": theirs})).code == 4300
        assert (await admin("DELETE", "/u/user/permission", {**grant, "permission": "x"})).code == 4312
        await admin.ok("DELETE", "/u/user/permission", grant)
        await root.ok("DELETE", "/u/user/permission", {"uid": target, "gid": sub})  # all of them
        assert (await target_client.ok("POST", "/u/user"))["memberships"] == []


async def test_root_group_permissions_are_account_roles(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        uid, user = await new_user(root, {0: ["velocity.user.list"]})
        assert (await user("POST", "/u/user/list")).status == 200
        async with connect(velocity_daemon) as rpc:
            assert (await rpc.call("user.get_instance", uid))["roles"] == ["VELOCITY_USER_LIST"]
        await root.ok("DELETE", "/u/user/permission", {"uid": uid, "gid": 0, "permission": "velocity.user.list"})
        assert (await user("POST", "/u/user/list")).code == 3100


async def test_groups_are_vm_groups(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        gid = await new_group(root)
        uid, user = await new_user(root, {gid: ["velocity.vm.view"]})
        async with connect(velocity_daemon) as rpc:
            assert (await rpc.call("vm_group.get_instance", gid))["parent"] is None
            grants = await rpc.call("acl.query", [["user", "=", uid]])
            assert [(g["role"], g["vm_group"]) for g in grants] == [("VELOCITY_VM_VIEW", gid)]
            made = await rpc.call("vm_group.create", {"name": unique("rpc"), "parent": gid})
            # A scoped JSON-RPC grant counts as the Velocity permission it amounts to.
            await rpc.call("acl.create", {"user": uid, "role": "VM_WRITE", "vm_group": made["id"]})
        listed = {g["gid"]: g for g in (await user.ok("POST", "/u/group/list"))["groups"]}
        assert set(listed) == {0, gid, made["id"]}
        assert listed[0]["permissions"] == [] and names(listed[gid]["permissions"]) == {"velocity.vm.view"}
        assert {"velocity.vm.state", "velocity.vm.create", "velocity.vm.view"} <= names(
            listed[made["id"]]["permissions"])
        assert listed[made["id"]]["parent_gid"] == gid


async def test_group_list_is_exactly_the_documented_set(velocity_daemon: Daemon) -> None:
    async with as_root(velocity_daemon) as root:
        a = await new_group(root)
        b = await new_group(root, a)
        c = await new_group(root, b)
        d = await new_group(root, c)
        sibling = await new_group(root, a)
        _unrelated = await new_group(root)
        _, user = await new_user(root, {c: ["velocity.vm.view"]})
        # Groups held on, their ancestors (for the tree), and their descendants; nothing else.
        assert {g["gid"] for g in (await user.ok("POST", "/u/group/list"))["groups"]} == {0, a, b, c, d}
        assert sibling not in {g["gid"] for g in (await user.ok("POST", "/u/group/list"))["groups"]}


async def test_group_delete_rules(velocity_daemon: Daemon) -> None:
    """Velocity answered 500 for a group with subgroups; here it is a 409 and nothing changes."""
    async with as_root(velocity_daemon) as root:
        parent = await new_group(root)
        child = await new_group(root, parent)
        refused = await root("DELETE", "/u/group", {"gid": parent})
        assert (refused.status, refused.code) == (409, 5321)
        assert (await root.ok("POST", "/u/group", {"gid": child}))["parent_gid"] == parent
        assert (await root("DELETE", "/u/group", {"gid": 0})).code == 5320
        assert (await root("DELETE", "/u/group", {"gid": 999999})).code == 5310
        _, user = await new_user(root, {child: ["velocity.group.remove"]})
        assert (await user("DELETE", "/u/group", {"gid": child})).code == 5300  # needed on the parent
        await root.ok("DELETE", "/u/group", {"gid": child})
        await root.ok("DELETE", "/u/group", {"gid": parent})
        name = unique("g")
        await root.ok("PUT", "/u/group", {"name": name, "parent_gid": 0})
        assert (await root("PUT", "/u/group", {"name": name, "parent_gid": 0})).code == 5220
        assert (await root("PUT", "/u/group", {"name": name, "parent_gid": 999999})).code == 5210
    assert "Traceback" not in velocity_daemon.log()
