"""user.* and group.*: local accounts and account groups in the datastore (not the host's /etc/passwd)."""
from __future__ import annotations

import asyncio
import errno
import json
import sqlite3
from typing import Any

from middlewared.errors import CallError, ValidationErrors
from middlewared.plugins.account import schemas as S
from middlewared.crud import crud_schemas
from middlewared.plugins.auth.acl import AccessCRUD
from middlewared.plugins.auth.passwords import hash_password
from middlewared.plugins.auth.scope import decode_roles
from middlewared.service import NULL_RESULT, api_method

ROOT_ID = 1


def _refuse(attribute: str, message: str, code: int = errno.EINVAL) -> ValidationErrors:
    verrors = ValidationErrors()
    verrors.add(attribute, message, code)
    return verrors


def _links(db: sqlite3.Connection, column: str, owner: int, others: list[int]) -> None:
    """Replace the memberships of one user (column user_id) or one group (column group_id)."""
    other = "group_id" if column == "user_id" else "user_id"
    db.execute(f"DELETE FROM account_membership WHERE {column} = ?", (owner,))
    db.executemany(f"INSERT INTO account_membership ({column}, {other}) VALUES (?, ?)",
                   [(owner, o) for o in others])


USER_CRUD = crud_schemas("user", "User", "ACCOUNT", S.USER_ENTRY, S.USER_CREATE, S.USER_UPDATE)
GROUP_CRUD = crud_schemas("group", "Group", "ACCOUNT", S.GROUP_ENTRY, S.GROUP_CREATE, S.GROUP_UPDATE)


class UserService(AccessCRUD):
    """user.*: accounts that log in with a password or API keys and hold roles."""

    namespace = "user"
    verbose_name = "User"
    table = "account_user"
    entry_schema = USER_CRUD.entry

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=USER_CRUD.query, result=USER_CRUD.query_result, roles=USER_CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """Local accounts matching the filters, with their groups, roles and whether a password is set (never the
        password hash)."""
        return await super().query(filters, options, app=app)

    @api_method(params=USER_CRUD.get_instance, result=USER_CRUD.entry, roles=USER_CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One local account by id; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=USER_CRUD.create, result=USER_CRUD.entry, roles=USER_CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create a local account: name, password (stored hashed), groups, roles, enabled and locked flags."""
        return await super().create(data)

    @api_method(params=USER_CRUD.update, result=USER_CRUD.entry, roles=USER_CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change an account's name (not a built-in one's), password, groups, roles or flags; its sessions get the new
        rights at once."""
        return await super().update(id_, data)

    @api_method(params=USER_CRUD.delete, result=USER_CRUD.deleted, roles=USER_CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete an account (built-in ones are refused with EPERM); its sessions end."""
        return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        ds = self.middleware.db
        members = await ds.fetchall("SELECT user_id, group_id FROM account_membership ORDER BY group_id")
        return [{"id": r["id"], "username": r["username"], "full_name": r["full_name"],
                 "enabled": bool(r["enabled"]), "locked": bool(r["locked"]), "builtin": bool(r["builtin"]),
                 "roles": decode_roles(r["roles"]), "password_set": r["password_hash"] is not None,
                 "groups": [m["group_id"] for m in members if m["user_id"] == r["id"]]}
                for r in await ds.fetchall("SELECT * FROM account_user ORDER BY id")]

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        hashed = await asyncio.to_thread(hash_password, data["password"]) if "password" in data else None
        values = (data["username"], data.get("full_name", ""), hashed, data.get("enabled", True),
                  data.get("locked", False), json.dumps(data.get("roles", [])))

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute("INSERT INTO account_user (username, full_name, password_hash, enabled, locked, roles)"
                             " VALUES (?, ?, ?, ?, ?, ?)", values)
            user_id = int(cur.lastrowid or 0)
            _links(db, "user_id", user_id, data.get("groups", []))
            return user_id
        return await self.get_instance(await self.write(insert, "user_create"))

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        old = await self.get_instance(id_)
        if old["builtin"] and data.get("username", old["username"]) != old["username"]:
            raise _refuse("user_update.username", "Built-in accounts cannot be renamed")
        new = {**old, **data}
        hashed = await asyncio.to_thread(hash_password, data["password"]) if "password" in data else None

        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE account_user SET username = ?, full_name = ?, enabled = ?, locked = ?, roles = ?"
                       " WHERE id = ?", (new["username"], new["full_name"], new["enabled"], new["locked"],
                                         json.dumps(new["roles"]), id_))
            if hashed is not None:
                db.execute("UPDATE account_user SET password_hash = ? WHERE id = ?", (hashed, id_))
            if "groups" in data:
                _links(db, "user_id", id_, data["groups"])
        await self.write(update, "user_update")
        return await self.get_instance(id_)

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        if (await self.get_instance(id_))["builtin"]:
            raise CallError("Built-in accounts cannot be deleted", errno.EPERM)
        return await super().do_delete(id_)

    @api_method(params=[S.ROOT_PASSWORD], result=NULL_RESULT, roles=("FULL_ADMIN",), audit="set_root_password")
    async def set_root_password(self, password: str) -> None:
        """Set root's password: the first-run step (root on the unix socket may always call it)."""
        await self.do_update(ROOT_ID, {"password": password})


class GroupService(AccessCRUD):
    """group.*: account groups; their roles apply to every member."""

    namespace = "group"
    verbose_name = "Group"
    table = "account_group"
    entry_schema = GROUP_CRUD.entry

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=GROUP_CRUD.query, result=GROUP_CRUD.query_result, roles=GROUP_CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """Account groups matching the filters, with their roles and member users."""
        return await super().query(filters, options, app=app)

    @api_method(params=GROUP_CRUD.get_instance, result=GROUP_CRUD.entry, roles=GROUP_CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One account group by id; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=GROUP_CRUD.create, result=GROUP_CRUD.entry, roles=GROUP_CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create an account group with roles and member users."""
        return await super().create(data)

    @api_method(params=GROUP_CRUD.update, result=GROUP_CRUD.entry, roles=GROUP_CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Change a group's name (not a built-in one's), roles or members; sessions of its members get the new rights
        at once."""
        return await super().update(id_, data)

    @api_method(params=GROUP_CRUD.delete, result=GROUP_CRUD.deleted, roles=GROUP_CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete an account group (built-in ones are refused with EPERM); its members lose its roles at once."""
        return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        ds = self.middleware.db
        members = await ds.fetchall("SELECT user_id, group_id FROM account_membership ORDER BY user_id")
        return [{"id": r["id"], "name": r["name"], "builtin": bool(r["builtin"]), "roles": decode_roles(r["roles"]),
                 "users": [m["user_id"] for m in members if m["group_id"] == r["id"]]}
                for r in await ds.fetchall("SELECT * FROM account_group ORDER BY id")]

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute("INSERT INTO account_group (name, roles) VALUES (?, ?)",
                             (data["name"], json.dumps(data.get("roles", []))))
            group_id = int(cur.lastrowid or 0)
            _links(db, "group_id", group_id, data.get("users", []))
            return group_id
        return await self.get_instance(await self.write(insert, "group_create"))

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        old = await self.get_instance(id_)
        if old["builtin"] and data.get("name", old["name"]) != old["name"]:
            raise _refuse("group_update.name", "Built-in groups cannot be renamed")
        new = {**old, **data}

        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE account_group SET name = ?, roles = ? WHERE id = ?",
                       (new["name"], json.dumps(new["roles"]), id_))
            if "users" in data:
                _links(db, "group_id", id_, data["users"])
        await self.write(update, "group_update")
        return await self.get_instance(id_)

    async def do_delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        if (await self.get_instance(id_))["builtin"]:
            raise CallError("Built-in groups cannot be deleted", errno.EPERM)
        return await super().do_delete(id_)
