"""Per-method call counts and latency buckets."""
from __future__ import annotations

from middlewared.call_stats import BUCKETS, CallStats


def test_buckets_are_cumulative_with_inf_last() -> None:
    stats = CallStats()
    for seconds, failed in ((0.00005, False), (0.003, True), (0.003, False), (120.0, False)):
        stats.observe("vm.query", seconds, failed)
    entry = stats.methods["vm.query"]
    assert (entry.count, entry.errors) == (4, 1) and round(entry.seconds, 5) == 120.00605
    pairs = entry.cumulative()
    assert len(pairs) == len(BUCKETS) + 1 and pairs[-1] == ("+Inf", 4)
    assert dict(pairs)["0.0001"] == 1 and dict(pairs)["0.005"] == 3 and dict(pairs)["60.0"] == 3
