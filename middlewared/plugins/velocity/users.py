"""/u/auth, /u/user, /u/user/list, /u/user/permission: authkeys, users and their permissions."""
from __future__ import annotations

from typing import Any

from middlewared import roles as roles_
from middlewared.plugins.account.schemas import PASSWORD, USERNAME
from middlewared.plugins.auth.login import check_password
from middlewared.plugins.auth.scope import policy
from middlewared.plugins.velocity import accounts, members
from middlewared.plugins.velocity import permissions as P
from middlewared.plugins.velocity import schemas as S
from middlewared.plugins.velocity.errors import ErrorSpec as Err
from middlewared.plugins.velocity.endpoint import Call, Endpoint

AUTH_RESULT = S.response("A new authkey.", {
    "authkey": S.string("The key: send it as 'Authorization: Bearer <authkey>' (or as authkey in the body)."),
    "expires": S.integer("Unix time (s) it expires unless used or refreshed before (each use extends it)."),
})


async def _issue(call: Call, row: dict[str, Any], session: str | None = None) -> dict[str, Any]:
    key = call.velocity.keys.issue(row, session)
    call.actor, call.session = row["username"], key.session
    return {"authkey": key.key, "expires": int(key.expires)}


async def auth_post(call: Call) -> dict[str, Any]:
    username = call.body.get("username", call.body.get("name", ""))
    call.actor = username
    failures, address = policy(call.middleware).failures, call.request.remote or "unknown"
    if failures.refusal(address, username) is not None:  # the JSON-RPC logins' rule and counts
        raise call.error(1101)
    outcome = await check_password(call.middleware, username, call.body["password"])
    if outcome.credentials is None or outcome.credentials.user_id is None:
        await failures.failed(address, username)
        raise call.error(1100)
    row = await accounts.user_row(call.middleware, outcome.credentials.user_id)
    assert row is not None
    return await _issue(call, row)


async def auth_patch(call: Call) -> dict[str, Any]:
    keys = call.velocity.keys
    found, expired = keys.find(call.authkey or "")
    if expired:
        raise call.error(1401)
    if found is None or await keys.credentials(call.middleware, found.key) is None:
        raise call.error(1400)
    keys.drop(found.key)
    row = await accounts.user_row(call.middleware, found.user_id)
    assert row is not None
    return await _issue(call, row, found.session)


async def auth_delete(call: Call) -> None:
    found, _ = call.velocity.keys.find(call.authkey or "")
    if found is None:
        return
    row = await accounts.user_row(call.middleware, found.user_id)
    call.actor, call.session = (row["username"] if row else None), found.session
    call.velocity.keys.drop(found.key)


async def _user_info(call: Call, row: dict[str, Any]) -> dict[str, Any]:
    credentials = await accounts.credentials_of(call.middleware, row)
    held = members.direct(credentials) if credentials else {}
    names = await members.group_rows(call.velocity)
    return {"uid": row["id"], "name": row["username"],
            "memberships": [{**names[gid], "permissions": members.permissions(roles)}
                            for gid, roles in sorted(held.items()) if gid in names]}


async def _membership_groups(call: Call, row: dict[str, Any]) -> set[int]:
    credentials = await accounts.credentials_of(call.middleware, row)
    return set(members.direct(credentials)) if credentials else set()


async def user_post(call: Call) -> dict[str, Any]:
    uid = call.body.get("uid", call.credentials.user_id)
    row = await accounts.user_row(call.middleware, uid) if uid is not None else None
    if row is None:
        if P.anywhere(call.velocity.index, call.credentials, "velocity.user.view"):
            raise call.error(2110, f"User {uid} does not exist")
        raise call.error(2100)
    if uid != call.credentials.user_id and not any(
            call.has("velocity.user.view", g) for g in {P.ROOT_GID, *await _membership_groups(call, row)}):
        raise call.error(2100, f"velocity.user.view is needed on a group user {uid} holds permissions on")
    return await _user_info(call, row)


async def user_put(call: Call) -> dict[str, Any]:
    if not P.anywhere(call.velocity.index, call.credentials, "velocity.user.create"):
        raise call.error(2200)
    name = call.body["name"]
    if any(u["username"] == name for u in await accounts.users(call.middleware)):
        raise call.error(2220, f"User {name} already exists")
    created = await accounts.create_user(call.middleware, name, call.body["password"])
    return {"uid": created["id"], "name": created["username"]}


async def user_delete(call: Call) -> None:
    uid = call.body["uid"]
    row = await accounts.user_row(call.middleware, uid)
    if row is None:
        raise call.error(2310, f"User {uid} does not exist")
    where = await _membership_groups(call, row)
    index, credentials = call.velocity.index, call.credentials
    allowed = P.has(index, credentials, "velocity.user.remove", P.ROOT_GID) or (
        all(call.has("velocity.user.remove", g) for g in where) if where
        else P.anywhere(index, credentials, "velocity.user.remove"))
    if not allowed:
        raise call.error(2300, "velocity.user.remove is needed on every group the user holds permissions on")
    if row["builtin"]:
        raise call.error(2320)
    await accounts.delete_user(call.middleware, uid)


async def user_list(call: Call) -> dict[str, Any]:
    if not P.anywhere(call.velocity.index, call.credentials, "velocity.user.list"):
        raise call.error(3100)
    return {"users": [{"uid": u["id"], "name": u["username"]} for u in await accounts.users(call.middleware)]}


async def _target(call: Call, base: int) -> tuple[dict[str, Any], int, P.Permission | None]:
    """The checked (user row, gid, permission) of a grant or revoke request."""
    gid, name = call.body["gid"], call.body.get("permission")
    action = "velocity.user.assign" if base == 4200 else "velocity.user.revoke"
    call.require_group(gid, base + 11)
    call.require(action, gid, base)
    row = await accounts.user_row(call.middleware, call.body["uid"])
    if row is None:
        raise call.error(base + 10, f"User {call.body['uid']} does not exist")
    if name is not None and name not in P.BY_NAME:
        raise call.error(base + 12, f"Permission {name} does not exist")
    return row, gid, P.BY_NAME[name] if name is not None else None


async def permission_put(call: Call) -> None:
    row, gid, permission = await _target(call, 4200)
    assert permission is not None
    if not call.has(permission.name, gid):
        raise call.error(4220, f"You do not hold {permission.name} on group {gid}")
    if gid == P.ROOT_GID:
        roles = list(dict.fromkeys([*await _roles_of(call, row["id"]), permission.role]))
        await accounts.set_roles(call.middleware, row["id"], roles)
        return
    grants = await accounts.grants(call.middleware)
    if not any(g["user"] == row["id"] and g["vm_group"] == gid and g["role"] == permission.role for g in grants):
        await accounts.grant(call.middleware, row["id"], permission.role, gid)


async def _roles_of(call: Call, uid: int) -> list[str]:
    found = next(u for u in await accounts.users(call.middleware) if u["id"] == uid)
    return list(found["roles"])


async def permission_delete(call: Call) -> None:
    row, gid, permission = await _target(call, 4300)
    if gid == P.ROOT_GID:
        current = await _roles_of(call, row["id"])
        gone = [r for r in current if (permission is None and r in P.ROLE_NAMES)
                or (permission is not None and r == permission.role)]
        _check_revocable(call, gid, [roles_.expand([r]) for r in gone])
        if gone:
            await accounts.set_roles(call.middleware, row["id"], [r for r in current if r not in gone])
        return
    rows = [g for g in await accounts.grants(call.middleware) if g["user"] == row["id"] and g["vm_group"] == gid
            and (permission is None or g["role"] == permission.role)]
    _check_revocable(call, gid, [roles_.expand([g["role"]]) for g in rows])
    for g in rows:
        await accounts.revoke(call.middleware, g["id"])


def _check_revocable(call: Call, gid: int, removed: list[frozenset[str]]) -> None:
    for held in removed:
        for permission in P.amounts_to(held):
            if not call.has(permission.name, gid):
                raise call.error(4320, f"You do not hold {permission.name} on group {gid}")


_UID_ONLY = S.request("Whose information (yours when omitted).", {"uid": S.UID})
USER_INFO = S.response("A user and the permissions held directly on each group.", {
    "uid": S.UID, "name": S.string("Login name."),
    "memberships": S.array(S.response("Permissions held on one group.", {
        "gid": S.GID, "parent_gid": S.GID, "name": S.string("Group name."), "permissions": S.PERMISSIONS,
    }), "Groups the user holds permissions on directly."),
})
_GRANT = {"uid": S.UID, "gid": S.GID, "permission": S.string("Permission name, e.g. velocity.vm.view.")}

ENDPOINTS = [
    Endpoint("POST", "/u/auth", "Log in: trade a username and password for an authkey.", auth_post,
             request={**S.request("Credentials ('name' is accepted for 'username').", {
                 "username": S.string("Login name."), "name": S.string("Login name (as the docs call it)."),
                 "password": S.string("Password.")}, ("password",)),
                 "anyOf": [{"required": ["username"]}, {"required": ["name"]}]},
             response=AUTH_RESULT, errors=(Err(403, 1100, "Unknown user or wrong password"),
                                           Err(403, 1101, "Too many failed logins from this address; try again later")),
             public=True, audit="AUTHENTICATION"),
    Endpoint("PATCH", "/u/auth", "Refresh an authkey: the old one ends, a new one is returned.", auth_patch,
             request=S.request("The key, in the body or as a Bearer token.", {}), response=AUTH_RESULT,
             errors=(Err(403, 1400, "The authkey is unknown"), Err(403, 1401, "The authkey expired")), public=True),
    Endpoint("DELETE", "/u/auth", "Log out: the authkey ends (200 even for unknown keys).", auth_delete,
             request=S.request("The key, in the body or as a Bearer token.", {}), public=True, audit="LOGOUT"),
    Endpoint("POST", "/u/user", "A user's information and permissions.", user_post, request=_UID_ONLY,
             response=USER_INFO, errors=(Err(403, 2100, "velocity.user.view is needed"),
                                         Err(404, 2110, "No such user")), audit=None),
    Endpoint("PUT", "/u/user", "Create a user (needs velocity.user.create on some group).", user_put,
             request=S.request("The new user.", {"name": {**USERNAME, "description": "Login name."},
                                                 "password": PASSWORD}, ("name", "password")),
             response=S.response("The new user.", {"uid": S.UID, "name": S.string("Login name.")}),
             errors=(Err(403, 2200, "velocity.user.create is needed"), Err(409, 2220, "The name is taken"))),
    Endpoint("DELETE", "/u/user", "Remove a user; its authkeys end at once.", user_delete,
             request=S.request("Which user.", {"uid": S.UID}, ("uid",)),
             errors=(Err(403, 2300, "velocity.user.remove is needed"), Err(404, 2310, "No such user"),
                     Err(409, 2320, "Built-in users cannot be removed"))),
    Endpoint("POST", "/u/user/list", "Every user.", user_list, request=S.request("Nothing.", {}),
             response=S.response("Every user.", {"users": S.array(S.response("A user.", {
                 "uid": S.UID, "name": S.string("Login name.")}), "Users.")}),
             errors=(Err(403, 3100, "velocity.user.list is needed"),), audit=None),
    Endpoint("PUT", "/u/user/permission", "Grant a user a permission on a group (only one you hold there).",
             permission_put, request=S.request("The grant.", _GRANT, ("uid", "gid", "permission")),
             errors=(Err(403, 4200, "velocity.user.assign is needed on the group"), Err(404, 4210, "No such user"),
                     Err(404, 4211, "No such group"), Err(404, 4212, "No such permission"),
                     Err(403, 4220, "You do not hold the permission on the group"))),
    Endpoint("DELETE", "/u/user/permission", "Revoke a permission (all of them when omitted) of a user on a "
             "group; only ones you hold there.", permission_delete,
             request=S.request("The revocation.", _GRANT, ("uid", "gid")),
             errors=(Err(403, 4300, "velocity.user.revoke is needed on the group"), Err(404, 4310, "No such user"),
                     Err(404, 4311, "No such group"), Err(404, 4312, "No such permission"),
                     Err(403, 4320, "You do not hold a revoked permission on the group"))),
]
