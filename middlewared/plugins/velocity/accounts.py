"""The Velocity API's one way into accounts, VM groups and grants (user.*, vm_group.*, acl.* services).

Writes go through the services' own methods, with the parameters checked by the same schemas as over
JSON-RPC, so every rule (names, passwords, uniqueness, session refresh) has one home.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from middlewared.credentials import Credentials
from middlewared.crud import CRUDService
from middlewared.plugins.account.service import UserService
from middlewared.plugins.auth.acl import ACLService, VMGroupService
from middlewared.plugins.auth.login import credentials_for
from middlewared.plugins.velocity.authkeys import KIND

if TYPE_CHECKING:
    from middlewared.middleware import Middleware


def validated(service: CRUDService, short: str, params: list[Any]) -> list[Any]:
    """Parameters checked (and defaults filled) by the schema of one of the service's API methods."""
    for name, _spec, arguments, _fn in service.api_methods():
        if name == short:
            return arguments.validate(params)
    raise KeyError(f"{service.namespace}.{short}")


async def user_row(middleware: "Middleware", uid: int) -> dict[str, Any] | None:
    """An account's stored row (password hash included: internal use only)."""
    rows = await middleware.db.fetchall("SELECT * FROM account_user WHERE id = ?", (uid,))
    return rows[0] if rows else None


async def users(middleware: "Middleware") -> list[dict[str, Any]]:
    """Every account (user.query records)."""
    return await middleware.service_of(UserService).rows()


async def credentials_of(middleware: "Middleware", row: dict[str, Any]) -> Credentials | None:
    """What an account holds now (None when it may not log in)."""
    return await credentials_for(middleware, row, KIND)


async def create_user(middleware: "Middleware", name: str, password: str) -> dict[str, Any]:
    service = middleware.service_of(UserService)
    (data,) = validated(service, "create", [{"username": name, "password": password}])
    return await service.create(data)


async def delete_user(middleware: "Middleware", uid: int) -> None:
    await middleware.service_of(UserService).delete(uid)


async def set_roles(middleware: "Middleware", uid: int, roles: list[str]) -> None:
    """Replace the roles an account holds everywhere."""
    await middleware.service_of(UserService).update(uid, {"roles": roles})


async def groups(middleware: "Middleware") -> list[dict[str, Any]]:
    """Every VM group (vm_group.query records)."""
    return await middleware.service_of(VMGroupService).rows()


async def create_group(middleware: "Middleware", name: str, parent: int | None) -> dict[str, Any]:
    service = middleware.service_of(VMGroupService)
    (data,) = validated(service, "create", [{"name": name, "parent": parent}])
    return await service.create(data)


async def delete_group(middleware: "Middleware", gid: int) -> None:
    await middleware.service_of(VMGroupService).delete(gid)


async def grants(middleware: "Middleware") -> list[dict[str, Any]]:
    """Every scoped grant (acl.query records)."""
    return await middleware.service_of(ACLService).rows()


async def grant(middleware: "Middleware", uid: int, role: str, gid: int) -> None:
    """Give a user one role on a VM group and its subtree."""
    service = middleware.service_of(ACLService)
    (data,) = validated(service, "create", [{"user": uid, "role": role, "vm_group": gid}])
    await service.create(data)


async def revoke(middleware: "Middleware", grant_id: int) -> None:
    await middleware.service_of(ACLService).delete(grant_id)


async def set_quotas(middleware: "Middleware", gid: int, quotas: dict[str, int | None]) -> dict[str, Any]:
    """Change a VM group's quotas (vm_group.update's rule: never above an ancestor's)."""
    service = middleware.service_of(VMGroupService)
    (_, data) = validated(service, "update", [gid, {"quotas": quotas}])
    return await service.update(gid, data)
