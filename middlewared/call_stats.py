"""Counts and latency buckets of API calls per method, kept cheaply on the call path and read by /metrics."""
from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field

# Upper bounds in seconds: most calls answer in well under a millisecond, jobs can take minutes.
BUCKETS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
           10.0, 30.0, 60.0)


@dataclass
class MethodCalls:
    """One method's calls: how many, how many failed, total seconds, and a count per bucket (not cumulative;
    the last slot counts calls slower than every bound)."""

    count: int = 0
    errors: int = 0
    seconds: float = 0.0
    buckets: list[int] = field(default_factory=lambda: [0] * (len(BUCKETS) + 1))

    def cumulative(self) -> list[tuple[str, int]]:
        """(upper bound, calls at or below it) pairs as Prometheus histograms state them, +Inf last."""
        out, total = [], 0
        for bound, count in zip((*(str(b) for b in BUCKETS), "+Inf"), self.buckets):
            total += count
            out.append((bound, total))
        return out


class CallStats:
    """Per-method call figures since the daemon started."""

    def __init__(self) -> None:
        self.methods: dict[str, MethodCalls] = {}

    def observe(self, method: str, seconds: float, failed: bool) -> None:
        """Record one finished call."""
        entry = self.methods.get(method)
        if entry is None:
            entry = self.methods[method] = MethodCalls()
        entry.count += 1
        entry.seconds += seconds
        if failed:
            entry.errors += 1
        entry.buckets[bisect_left(BUCKETS, seconds)] += 1
