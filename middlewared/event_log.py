"""Event sequence numbers and the bounded log core.subscribe replays from (``{"since": N}``).

Every event the daemon sends gets the next number of one daemon-wide sequence, in the notification's
params beside ``fields``. Events of kinds worth replaying are also kept, the last CAPACITY of them, so a client
that reconnects can ask for what it missed after the last number it saw; an answer is refused when the log no
longer reaches back that far, rather than silently missing events. Numbers restart with the daemon.
"""
from __future__ import annotations

import errno
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterator

from middlewared.errors import CallError
from middlewared.job import Job

CAPACITY = 4096


@dataclass(frozen=True)
class Logged:
    """One kept event, as it was sent."""

    seq: int
    name: str
    kind: str
    payload: dict[str, Any]
    job: Job | None


class EventLog:
    """The sequence counter and the last CAPACITY replayable events."""

    def __init__(self, capacity: int = CAPACITY) -> None:
        self.last = 0
        self.kept: deque[Logged] = deque(maxlen=capacity)
        # The highest number no longer kept: a replay must start after it.
        self.forgotten = 0

    def stamp(self, name: str, kind: str, payload: dict[str, Any], job: Job | None = None,
              keep: bool = True) -> None:
        """Number an event (``payload["seq"]``) and keep it for replays."""
        self.last += 1
        payload["seq"] = self.last
        if not keep:
            return
        if len(self.kept) == self.kept.maxlen:
            self.forgotten = self.kept[0].seq
        self.kept.append(Logged(self.last, name, kind, payload, job))

    def since(self, since: int, name: str) -> Iterator[Logged]:
        """The kept events of name ('*': all) numbered after since; CallError when some are gone."""
        self.check(since)
        return (e for e in self.kept if e.seq > since and (name == "*" or e.name == name))

    def check(self, since: int) -> None:
        """Raise CallError unless every replayable event numbered after since is still kept."""
        if since > self.last:
            raise CallError(f"Event {since} has not been sent: the last is {self.last} (numbers restart when "
                            "the daemon restarts; query the current state instead)", errno.EINVAL)
        if since < self.forgotten:
            raise CallError(f"Events after {since} are no longer kept (the log starts after {self.forgotten}); "
                            "query the current state instead", errno.ESTALE)
