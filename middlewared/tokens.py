"""Short-lived authentication tokens: auth.generate_token, token logins and job downloads."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any, Callable

from middlewared.credentials import Credentials


@dataclass
class Token:
    """A token: who it stands for, until when, from where, and what it is bound to."""

    value: str
    credentials: Credentials
    expires: float
    single_use: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)
    # The address it must be used from (auth.generate_token's match_origin), or None for anywhere.
    address: str | None = None


class TokenManager:
    """Issues and checks tokens; expired and used single-use tokens are dropped."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}

    def create(self, credentials: Credentials, ttl: float = 600, single_use: bool = False,
               attrs: dict[str, Any] | None = None, address: str | None = None) -> str:
        """A new random token valid for ttl seconds."""
        self._prune()
        value = secrets.token_urlsafe(32)
        self._tokens[value] = Token(value, credentials, time.monotonic() + ttl, single_use, dict(attrs or {}),
                                    address)
        return value

    def take(self, value: str, address: str | None = None) -> Token | None:
        """The valid token with this value (consumed when single-use), or None.

        A token bound to an address is refused (and kept) when presented from another one.
        """
        self._prune()
        token = self._tokens.get(value)
        if token is None or (token.address is not None and address is not None and token.address != address):
            return None
        if token.single_use:
            del self._tokens[value]
        return token

    def revoke_for(self, username: str) -> None:
        """Drop every token issued to a user."""
        self.revoke_where(lambda t: t.credentials.username == username)

    def revoke_where(self, predicate: Callable[[Token], bool]) -> None:
        """Drop every token the predicate selects (e.g. those issued to a session of a revoked API key)."""
        for value in [v for v, t in self._tokens.items() if predicate(t)]:
            del self._tokens[value]

    def _prune(self) -> None:
        now = time.monotonic()
        for value in [v for v, t in self._tokens.items() if t.expires <= now]:
            del self._tokens[value]
