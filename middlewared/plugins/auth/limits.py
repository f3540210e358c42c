"""Limits on what unauthenticated clients may try: calls per address, and failed logins per address and per
user name (so that guesses spread over many addresses are limited too)."""
from __future__ import annotations

import asyncio
import errno
import random
import time
from collections import deque

from middlewared.errors import CallError

FAILURE_MEMORY = 600.0  # seconds a failed login keeps counting against its address and its user name
USER_FAILURE_LIMIT = 10  # failed logins of one user name within FAILURE_MEMORY before its logins are refused
MAX_TRACKED = 10000      # keys remembered before stale ones are forgotten


class RateLimiter:
    """At most `calls` per `period` seconds per key; a key over its limit is refused for a whole period."""

    def __init__(self, calls: int, period: float) -> None:
        self.calls = calls
        self.period = period
        self._seen: dict[str, deque[float]] = {}
        self._blocked: dict[str, float] = {}  # key -> end of its cool-down

    def hit(self, key: str) -> bool:
        """Count one call; False when the key is over its limit or cooling down."""
        now = time.monotonic()
        until = self._blocked.get(key)
        if until is not None:
            if now < until:
                return False
            del self._blocked[key]
            self._seen.pop(key, None)
        window = self._seen.setdefault(key, deque())
        while window and window[0] <= now - self.period:
            window.popleft()
        if len(window) >= self.calls:
            # Refused until the cool-down ends, however slowly the client goes on trying meanwhile.
            self._blocked[key] = now + self.period
            return False
        window.append(now)
        if len(self._seen) > MAX_TRACKED:
            self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        for key in [k for k, w in self._seen.items() if not w or w[-1] <= now - self.period]:
            del self._seen[key]
        for key in [k for k, until in self._blocked.items() if until <= now]:
            del self._blocked[key]

    async def check(self, key: str) -> None:
        """Raise 'Rate Limit Exceeded' (EBUSY) after a random pause when the key is over its limit."""
        if not self.hit(key):
            # The pause slows a client that ignores the error; randomness hides timing details.
            await asyncio.sleep(random.uniform(0.5, 1.5))
            raise CallError("Rate Limit Exceeded", errno.EBUSY)


class FailureLog:
    """Times of recent failures per key (an address or a user name), forgotten after FAILURE_MEMORY."""

    def __init__(self) -> None:
        self._failures: dict[str, deque[float]] = {}

    def recent(self, key: str) -> int:
        """Failures of key in the last FAILURE_MEMORY seconds."""
        now = time.monotonic()
        window = self._failures.get(key)
        while window and window[0] <= now - FAILURE_MEMORY:
            window.popleft()
        return len(window or ())

    def record(self, key: str) -> None:
        self._failures.setdefault(key, deque()).append(time.monotonic())
        if len(self._failures) > MAX_TRACKED:
            for stale in [k for k in self._failures if not self.recent(k)]:
                del self._failures[stale]


class FailureThrottle:
    """Failed logins: a delay of 1-2 base delays growing with recent failures of the address or the user
    name, and no logins at all for a user name with USER_FAILURE_LIMIT recent failures."""

    def __init__(self, base: float, user_limit: int = USER_FAILURE_LIMIT) -> None:
        self.base = base
        self.user_limit = user_limit
        self.addresses = FailureLog()
        self.users = FailureLog()

    def locked(self, username: str | None) -> bool:
        """Whether logins of this user name are refused for now (its recent failures reached the limit)."""
        return username is not None and self.users.recent(username) >= self.user_limit

    def delay(self, address: str, username: str | None = None) -> float:
        """The pause for one more failure from address for username (recorded by this call)."""
        previous = self.addresses.recent(address)
        self.addresses.record(address)
        if username is not None:
            previous = max(previous, self.users.recent(username))
            self.users.record(username)
        return self.base * random.uniform(1.0, 2.0) * (1 + 0.5 * min(previous, 8))

    async def failed(self, address: str, username: str | None = None) -> None:
        """Sleep the delay of one more failure from address for username."""
        await asyncio.sleep(self.delay(address, username))
