"""Velocity authkeys: random keys standing for a user, in memory, living ``authkey_lifetime`` seconds after
their last use, ending with their user, their user's password and at logout."""
from __future__ import annotations

import secrets
import time
import uuid
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from middlewared.credentials import Credentials
from middlewared.plugins.auth.login import credentials_for

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

KIND = "VELOCITY_AUTHKEY"


@dataclass
class AuthKey:
    """One issued key: its user, the password hash it was issued under, and when it expires."""

    key: str
    user_id: int
    password_hash: str | None
    expires: float
    # Names the login the key came from in the audit log (kept by refreshes); unlike the key, not a secret.
    session: str


class AuthKeys:
    """The keys issued by /u/auth."""

    def __init__(self, lifetime: int) -> None:
        self.lifetime = lifetime
        self._keys: dict[str, AuthKey] = {}

    def issue(self, user: dict[str, Any], session: str | None = None) -> AuthKey:
        """A new key for an account row, for a new login or continuing session (expired keys are swept)."""
        now = time.time()
        for key in [k for k, v in self._keys.items() if v.expires <= now]:
            del self._keys[key]
        # A UUID like Velocity's, drawn from the system's CSPRNG.
        found = AuthKey(str(uuid.UUID(bytes=secrets.token_bytes(16), version=4)), user["id"],
                        user["password_hash"], now + self.lifetime, session or str(uuid.uuid4()))
        self._keys[found.key] = found
        return found

    def find(self, key: str) -> tuple[AuthKey | None, bool]:
        """(the key, whether it expired); an expired key is forgotten."""
        found = self._keys.get(key)
        if found is None:
            return None, False
        if found.expires <= time.time():
            del self._keys[key]
            return None, True
        return found, False

    def drop(self, key: str) -> None:
        """Forget one key (logout, refresh); unknown keys are ignored."""
        self._keys.pop(key, None)

    def slide(self, found: AuthKey) -> None:
        """Extend a key's life after a successful use."""
        found.expires = time.time() + self.lifetime

    async def credentials(self, middleware: "Middleware", key: str) -> Credentials | None:
        """The credentials a key stands for now, or None (unknown, expired, user gone, barred or re-passworded)."""
        found, _ = self.find(key)
        if found is None:
            return None
        rows = await middleware.db.fetchall("SELECT * FROM account_user WHERE id = ?", (found.user_id,))
        user = rows[0] if rows else None
        if user is None or user["password_hash"] != found.password_hash:
            self.drop(key)
            return None
        credentials = await credentials_for(middleware, user, KIND)
        if credentials is None:
            self.drop(key)
            return None
        self.slide(found)
        return credentials
