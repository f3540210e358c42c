"""Checking credentials (passwords, API keys, tokens, SCRAM) and building a session's Credentials."""
from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from middlewared import credentials as creds
from middlewared.credentials import Credentials
from middlewared.plugins.auth import scram
from middlewared.plugins.auth.passwords import verify_password
from middlewared.plugins.auth.scope import decode_roles, policy

if TYPE_CHECKING:
    from middlewared.middleware import Connection, Middleware

SUCCESS, AUTH_ERR, EXPIRED = "SUCCESS", "AUTH_ERR", "EXPIRED"


@dataclass(frozen=True)
class Outcome:
    """The result of checking one set of credentials."""

    response_type: str
    credentials: Credentials | None = None
    username: str | None = None


async def _one(middleware: "Middleware", sql: str, params: tuple[Any, ...]) -> dict[str, Any] | None:
    ds = middleware.datastore
    assert ds is not None
    rows = await ds.fetchall(sql, params)
    return rows[0] if rows else None


async def credentials_for(middleware: "Middleware", user: dict[str, Any], kind: str,
                          api_key_id: int | None = None, expires: float | None = None) -> Credentials | None:
    """The Credentials of an account row: its roles, its groups' roles and its scoped grants (None if barred)."""
    if not user["enabled"] or user["locked"]:
        return None
    ds = middleware.datastore
    assert ds is not None
    groups = await ds.fetchall("SELECT g.id, g.roles FROM account_group g JOIN account_membership m"
                               " ON m.group_id = g.id WHERE m.user_id = ?", (user["id"],))
    granted = decode_roles(user["roles"])
    for group in groups:
        granted.extend(decode_roles(group["roles"]))
    grants = policy(middleware).index.grants_for(user["id"], [g["id"] for g in groups])
    return creds.with_roles(kind, user["username"], granted, user_id=user["id"], grants=grants,
                            api_key_id=api_key_id, expires=expires)


async def check_password(middleware: "Middleware", username: str, password: str) -> Outcome:
    """PASSWORD_PLAIN: scrypt check in a thread (it takes ~0.2 s on purpose)."""
    user = await _one(middleware, "SELECT * FROM account_user WHERE username = ?", (username,))
    ok = await asyncio.to_thread(verify_password, password, user["password_hash"] if user else None)
    if not ok or user is None:
        return Outcome(AUTH_ERR, username=username)
    credentials = await credentials_for(middleware, user, "LOGIN_PASSWORD")
    return Outcome(SUCCESS if credentials else AUTH_ERR, credentials, username)


def split_key(key: str) -> tuple[int, str] | None:
    """(id, secret) of a ``<id>-<secret>`` API key, or None."""
    key_id, _, secret = key.strip().partition("-")
    return (int(key_id), secret) if key_id.isdigit() and secret else None


async def api_key_row(middleware: "Middleware", key_id: int) -> dict[str, Any] | None:
    """An API key joined with its owner's name."""
    return await _one(middleware, "SELECT k.*, u.username FROM api_key k JOIN account_user u"
                                  " ON u.id = k.user_id WHERE k.id = ?", (key_id,))


def scram_keys(row: dict[str, Any]) -> scram.ScramKeys:
    """The stored SCRAM data of an API key row."""
    return scram.ScramKeys(base64.b64decode(row["salt"]), row["iterations"], base64.b64decode(row["stored_key"]),
                           base64.b64decode(row["server_key"]))


async def key_session(middleware: "Middleware", row: dict[str, Any]) -> Outcome:
    """The outcome of presenting a valid API key: EXPIRED past its expiry, else a session as its owner."""
    if row["expires_at"] is not None and row["expires_at"] <= time.time():
        return Outcome(EXPIRED, username=row["username"])
    user = await _one(middleware, "SELECT * FROM account_user WHERE id = ?", (row["user_id"],))
    credentials = await credentials_for(middleware, user, "API_KEY", row["id"], row["expires_at"]) \
        if user else None
    return Outcome(SUCCESS if credentials else AUTH_ERR, credentials, row["username"])


async def check_api_key(middleware: "Middleware", key: str, username: str | None) -> Outcome:
    """API_KEY_PLAIN: PBKDF2 of the secret (in a thread) against the key's StoredKey."""
    parts = split_key(key)
    row = await api_key_row(middleware, parts[0]) if parts else None
    if parts is None or row is None or (username is not None and row["username"] != username):
        return Outcome(AUTH_ERR, username=username)
    if not await asyncio.to_thread(scram.check_secret, parts[1], scram_keys(row)):
        return Outcome(AUTH_ERR, username=row["username"])
    return await key_session(middleware, row)


def check_token(middleware: "Middleware", token: str, app: "Connection") -> Outcome:
    """TOKEN_PLAIN: a token from auth.generate_token, not one bound to a job download or a web console."""
    return token_outcome(middleware, token, app.address)


def token_outcome(middleware: "Middleware", token: str, address: str | None) -> Outcome:
    """A session token presented from an address (a login, or a bearer token over HTTP)."""
    found = middleware.tokens.take(token, address)
    if found is None or "job" in found.attrs or "web_console" in found.attrs:
        return Outcome(AUTH_ERR)
    base = found.credentials
    return Outcome(SUCCESS, Credentials("TOKEN", base.username, base.roles, {}, base.user_id, base.grants,
                                        base.api_key_id, base.expires), base.username)


async def refresh_sessions(middleware: "Middleware") -> None:
    """Re-read the credentials of every logged-in session after accounts, keys or grants changed.

    Sessions whose user was disabled, locked or deleted, or whose API key was revoked, end at once.
    """
    for conn in list(middleware.connections):
        old = conn.credentials
        if old.user_id is None:
            continue  # root on the unix socket, anonymous
        user = await _one(middleware, "SELECT * FROM account_user WHERE id = ?", (old.user_id,))
        key = await api_key_row(middleware, old.api_key_id) if old.api_key_id is not None else None
        new = None
        if user is not None and (old.api_key_id is None or key is not None):
            new = await credentials_for(middleware, user, old.kind, old.api_key_id,
                                        key["expires_at"] if key else old.expires)
        if new is None:
            middleware.tokens.revoke_where(lambda t: t.credentials.user_id == old.user_id
                                           and t.credentials.api_key_id == old.api_key_id)
            await conn.terminate("API key revoked" if old.api_key_id is not None and key is None
                                 else "Session ended: its account changed")
        else:
            conn.set_credentials(new)
