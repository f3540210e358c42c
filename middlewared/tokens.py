"""Short-lived authentication tokens (downloads now; token logins with the auth plugin)."""
from __future__ import annotations

import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from middlewared.credentials import Credentials


@dataclass
class Token:
    """A token: who it stands for, until when, and what it is bound to."""

    value: str
    credentials: Credentials
    expires: float
    single_use: bool = False
    attrs: dict[str, Any] = field(default_factory=dict)


class TokenManager:
    """Issues and checks tokens; expired and used single-use tokens are dropped."""

    def __init__(self) -> None:
        self._tokens: dict[str, Token] = {}

    def create(self, credentials: Credentials, ttl: float = 600, single_use: bool = False,
               attrs: dict[str, Any] | None = None) -> str:
        """A new random token valid for ttl seconds."""
        self._prune()
        value = secrets.token_urlsafe(32)
        self._tokens[value] = Token(value, credentials, time.monotonic() + ttl, single_use, dict(attrs or {}))
        return value

    def take(self, value: str) -> Token | None:
        """The valid token with this value (consumed when single-use), or None."""
        self._prune()
        token = self._tokens.get(value)
        if token is not None and token.single_use:
            del self._tokens[value]
        return token

    def revoke_for(self, username: str) -> None:
        """Drop every token issued to a user."""
        for value in [v for v, t in self._tokens.items() if t.credentials.username == username]:
            del self._tokens[value]

    def _prune(self) -> None:
        now = time.monotonic()
        for value in [v for v, t in self._tokens.items() if t.expires <= now]:
            del self._tokens[value]
