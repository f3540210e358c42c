"""Rate limits of unauthenticated calls and the growing delay after failed logins, per source address."""
from __future__ import annotations

import asyncio
import errno
import random
import time
from collections import deque

from middlewared.errors import CallError

FAILURE_MEMORY = 600.0  # seconds a failed login keeps counting against its address
MAX_TRACKED = 10000     # addresses remembered before stale ones are forgotten


class RateLimiter:
    """At most `calls` per `period` seconds per key (TrueNAS: 20 per 60 s per origin and method)."""

    def __init__(self, calls: int, period: float) -> None:
        self.calls = calls
        self.period = period
        self._seen: dict[str, deque[float]] = {}

    def hit(self, key: str) -> bool:
        """Count one call; False when the key is over its limit."""
        now = time.monotonic()
        window = self._seen.setdefault(key, deque())
        while window and window[0] <= now - self.period:
            window.popleft()
        if len(window) >= self.calls:
            return False
        window.append(now)
        if len(self._seen) > MAX_TRACKED:
            self._forget(now)
        return True

    def _forget(self, now: float) -> None:
        for key in [k for k, w in self._seen.items() if not w or w[-1] <= now - self.period]:
            del self._seen[key]

    async def check(self, key: str) -> None:
        """Raise 'Rate Limit Exceeded' (EBUSY) after a random pause when the key is over its limit."""
        if not self.hit(key):
            # The pause slows a client that ignores the error; randomness hides timing details.
            await asyncio.sleep(random.uniform(0.5, 1.5))
            raise CallError("Rate Limit Exceeded", errno.EBUSY)


class FailureThrottle:
    """Delays the answer to a failed login: 1-2 base delays, growing with the address's recent failures."""

    def __init__(self, base: float) -> None:
        self.base = base
        self._failures: dict[str, deque[float]] = {}

    def recent(self, address: str) -> int:
        """Failed logins from address in the last FAILURE_MEMORY seconds."""
        now = time.monotonic()
        window = self._failures.get(address)
        while window and window[0] <= now - FAILURE_MEMORY:
            window.popleft()
        return len(window or ())

    def delay(self, address: str) -> float:
        """The pause for one more failure from address (recorded by this call)."""
        previous = self.recent(address)
        self._failures.setdefault(address, deque()).append(time.monotonic())
        if len(self._failures) > MAX_TRACKED:
            for key in [k for k in self._failures if not self.recent(k)]:
                del self._failures[key]
        return self.base * random.uniform(1.0, 2.0) * (1 + 0.5 * min(previous, 8))

    async def failed(self, address: str) -> None:
        """Sleep the delay of one more failure from address."""
        await asyncio.sleep(self.delay(address))
