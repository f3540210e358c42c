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
    """At most `calls` per `period` seconds per key; a key over its limit is refused for a whole period.

    Counted in fixed windows (one opens with a key's first call): a counter per key, O(1) on every
    unauthenticated call, instead of a log of call times.
    """

    def __init__(self, calls: int, period: float) -> None:
        self.calls = calls
        self.period = period
        self._seen: dict[str, list[float]] = {}  # key -> [window start, calls in it, end of cool-down or 0]

    def hit(self, key: str) -> bool:
        """Count one call; False when the key is over its limit or cooling down."""
        now = time.monotonic()
        entry = self._seen.get(key)
        if entry is None:
            if len(self._seen) >= MAX_TRACKED:
                self._forget(now)
            self._seen[key] = [now, 1, 0.0]
            return True
        if entry[2]:
            if now < entry[2]:
                return False
            entry[:] = [now, 1, 0.0]
            return True
        if now - entry[0] >= self.period:
            entry[0], entry[1] = now, 1
            return True
        if entry[1] >= self.calls:
            # Refused until the cool-down ends, however slowly the client goes on trying meanwhile.
            entry[2] = now + self.period
            return False
        entry[1] += 1
        return True

    def _forget(self, now: float) -> None:
        for key in [k for k, (start, _, until) in self._seen.items()
                    if now - start >= self.period and until <= now]:
            del self._seen[key]

    async def check(self, key: str) -> None:
        """Raise 'Rate Limit Exceeded' (EBUSY) after a random pause when the key is over its limit."""
        if not self.hit(key):
            await refuse()


async def refuse() -> None:
    """Raise 'Rate Limit Exceeded' (EBUSY) after a random pause."""
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
