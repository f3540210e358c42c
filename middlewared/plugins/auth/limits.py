"""Limits on what unauthenticated clients may try: calls per address, and failed logins per address and per
(user name, address) pair. Refusals fall on the address that failed, never on a user name everywhere: otherwise
anyone could lock the administrator out by failing as them (the way fail2ban guards Proxmox and sshd)."""
from __future__ import annotations

import asyncio
import errno
import random
import time
from collections import deque

from middlewared.errors import CallError

FAILURE_MEMORY = 600.0  # seconds a failed login keeps counting against its address and its user name
PAIR_FAILURE_LIMIT = 10  # failed logins as one user name from one address before that address may not log in as it
ADDRESS_FAILURE_LIMIT = 30  # failed logins from one address (any user names) before it may not log in at all
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
    """Failed logins: each one answered after 1-2 base delays, growing with the recent failures of its address or
    of its user name (from anywhere); logins from an address are refused, even with the right secret, once it has
    ADDRESS_FAILURE_LIMIT recent failures, and as a user name once that name has PAIR_FAILURE_LIMIT from it. The
    same user logs in from any other address meanwhile."""

    def __init__(self, base: float, pair_limit: int = PAIR_FAILURE_LIMIT,
                 address_limit: int = ADDRESS_FAILURE_LIMIT) -> None:
        self.base = base
        self.pair_limit = pair_limit
        self.address_limit = address_limit
        self.addresses = FailureLog()
        self.pairs = FailureLog()
        self.users = FailureLog()

    def refusal(self, address: str, username: str | None) -> str | None:
        """Why a login from address as username is refused for now (None: it may try)."""
        if self.addresses.recent(address) >= self.address_limit:
            return "Too many failed logins from this address; try again later"
        if username is not None and self.pairs.recent(_pair(address, username)) >= self.pair_limit:
            return "Too many failed logins for this user from this address; try again later"
        return None

    def delay(self, address: str, username: str | None = None) -> float:
        """The pause for one more failure from address for username (recorded by this call)."""
        previous = self.addresses.recent(address)
        self.addresses.record(address)
        if username is not None:
            previous = max(previous, self.users.recent(username))
            self.users.record(username)
            self.pairs.record(_pair(address, username))
        return self.base * random.uniform(1.0, 2.0) * (1 + 0.5 * min(previous, 8))

    async def failed(self, address: str, username: str | None = None) -> None:
        """Sleep the delay of one more failure from address for username."""
        await asyncio.sleep(self.delay(address, username))


def _pair(address: str, username: str) -> str:
    # NUL occurs in neither an address nor a user name.
    return f"{address}\0{username}"
