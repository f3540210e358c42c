"""api_key.*: keys shown once as ``<id>-<secret>``, stored only as SCRAM-SHA-512 data (salt, iterations,
StoredKey, ServerKey), with expiry; deleting or resetting a key ends the sessions that use it at once."""
from __future__ import annotations

import asyncio
import base64
import errno
import secrets
import sqlite3
import string
import time
from typing import TYPE_CHECKING, Any

from middlewared import roles as roles_
from middlewared.errors import ValidationErrors
from middlewared.plugins.api_key import schemas as S
from middlewared.plugins.auth import scram
from middlewared.crud import crud_schemas
from middlewared.plugins.auth.acl import AccessCRUD
from middlewared.service import api_method

if TYPE_CHECKING:
    from middlewared.api.rpc import RpcConnection

ALPHABET = string.ascii_letters + string.digits
SECRET_LENGTH = 64  # TrueNAS keys: <id>-<64 alphanumerics>; clients (pytruenas) recognise keys by that shape


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _date(seconds: float | None) -> dict[str, int] | None:
    return None if seconds is None else {"$date": int(seconds * 1000)}


def _seconds(value: dict[str, Any] | None) -> float | None:
    return None if value is None else value["$date"] / 1000


CRUD = crud_schemas("api_key", "API key", "API_KEY", S.ENTRY, S.CREATE, S.UPDATE)


class ApiKeyService(AccessCRUD):
    """API keys of local users."""

    namespace = "api_key"
    verbose_name = "API key"
    role_prefix = "API_KEY"
    table = "api_key"
    entry_schema = CRUD.entry

    # -- the API -------------------------------------------------------------------------------------
    @api_method(params=CRUD.query, result=CRUD.query_result, roles=CRUD.read)
    async def query(self, filters: list[Any] | None = None, options: dict[str, Any] | None = None, *,
                    app: Any = None) -> Any:
        """API keys matching the filters: name, owner, creation and expiry dates (never the key or its hash)."""
        return await super().query(filters, options, app=app)

    @api_method(params=CRUD.get_instance, result=CRUD.entry, roles=CRUD.read)
    async def get_instance(self, id_: int, options: dict[str, Any] | None = None, *,
                           app: Any = None) -> dict[str, Any]:
        """One API key by id; ENOENT when there is none."""
        return await super().get_instance(id_, options, app=app)

    @api_method(params=CRUD.create, result=CRUD.entry, roles=CRUD.write)
    async def create(self, data: dict[str, Any]) -> dict[str, Any]:
        """Create an API key for a local user; the answer shows the key ("<id>-<secret>") once, with its SCRAM-SHA-512
        data, and only its hash is stored."""
        return await super().create(data)

    @api_method(params=CRUD.update, result=CRUD.entry, roles=CRUD.write)
    async def update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        """Rename an API key or change its expiry; with reset, a new secret is shown once and the old one's sessions
        and tokens end."""
        return await super().update(id_, data)

    @api_method(params=CRUD.delete, result=CRUD.deleted, roles=CRUD.write)
    async def delete(self, id_: int, options: dict[str, Any] | None = None) -> bool:
        """Delete an API key; sessions that logged in with it end."""
        return await super().delete(id_, options)

    async def rows(self) -> list[dict[str, Any]]:
        ds = self.middleware.db
        rows = await ds.fetchall("SELECT k.*, u.username FROM api_key k JOIN account_user u ON u.id = k.user_id"
                                 " ORDER BY k.id")
        now = time.time()
        return [{"id": r["id"], "name": r["name"], "username": r["username"], "user_identifier": r["user_id"],
                 "created_at": _date(r["created_at"]), "expires_at": _date(r["expires_at"]), "local": True,
                 "revoked": False, "expired": r["expires_at"] is not None and r["expires_at"] <= now}
                for r in rows]

    async def _new_secret(self) -> tuple[str, scram.ScramKeys]:
        secret = "".join(secrets.choice(ALPHABET) for _ in range(SECRET_LENGTH))
        keys = await asyncio.to_thread(scram.derive_keys, secret, secrets.token_bytes(16),
                                       self.middleware.config.auth.api_key_iterations)
        return secret, keys

    def _shown_once(self, entry: dict[str, Any], secret: str, keys: scram.ScramKeys) -> dict[str, Any]:
        """The entry plus what only the creator sees: the key and its precomputed SCRAM data."""
        return {**entry, "key": f"{entry['id']}-{secret}", "client_key": _b64(keys.client_key),
                "stored_key": _b64(keys.stored_key), "server_key": _b64(keys.server_key), "salt": _b64(keys.salt),
                "iterations": keys.iterations}

    async def do_create(self, data: dict[str, Any]) -> dict[str, Any]:
        ds = self.middleware.db
        users = await ds.fetchall("SELECT id FROM account_user WHERE username = ?", (data["username"],))
        if not users:
            verrors = ValidationErrors()
            verrors.add("api_key_create.username", f"User {data['username']} does not exist", errno.ENOENT)
            raise verrors
        secret, keys = await self._new_secret()
        values = (users[0]["id"], data["name"], _b64(keys.salt), keys.iterations, _b64(keys.stored_key),
                  _b64(keys.server_key), time.time(), _seconds(data.get("expires_at")))

        def insert(db: sqlite3.Connection) -> int:
            cur = db.execute("INSERT INTO api_key (user_id, name, salt, iterations, stored_key, server_key,"
                             " created_at, expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?)", values)
            return int(cur.lastrowid or 0)
        key_id = await self.write(insert, "api_key_create.name")
        return self._shown_once(await self.get_instance(key_id), secret, keys)

    async def do_update(self, id_: int, data: dict[str, Any]) -> dict[str, Any]:
        old = await self.get_instance(id_)
        name = data.get("name", old["name"])
        expires = _seconds(data["expires_at"]) if "expires_at" in data else _seconds(old["expires_at"])
        fresh = await self._new_secret() if data.get("reset") else None

        def update(db: sqlite3.Connection) -> None:
            db.execute("UPDATE api_key SET name = ?, expires_at = ? WHERE id = ?", (name, expires, id_))
            if fresh is not None:
                keys = fresh[1]
                db.execute("UPDATE api_key SET salt = ?, iterations = ?, stored_key = ?, server_key = ? WHERE id = ?",
                           (_b64(keys.salt), keys.iterations, _b64(keys.stored_key), _b64(keys.server_key), id_))
        await self.write(update, "api_key_update.name")  # sessions take the new expiry
        if fresh is None:
            return await self.get_instance(id_)
        # The old secret is revoked: its sessions and the tokens they issued end now (a deleted key's
        # sessions end in write(), which finds the key gone).
        self.middleware.tokens.revoke_where(lambda t: t.credentials.api_key_id == id_)
        for conn in list(self.middleware.connections):
            if conn.credentials.api_key_id == id_:
                await conn.terminate("API key revoked")
        return self._shown_once(await self.get_instance(id_), *fresh)

    @api_method(params=[], result=S.MY_KEYS_RESULT, roles=(roles_.AUTHENTICATED,))
    async def my_keys(self, *, app: "RpcConnection | None" = None) -> list[dict[str, Any]]:
        """The API keys of the session's own user."""
        if app is None or app.credentials.user_id is None:
            return []
        user_id = app.credentials.user_id
        return [r for r in await self.rows() if r["user_identifier"] == user_id]
