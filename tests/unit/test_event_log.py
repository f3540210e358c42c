"""Event sequence numbers and the bounded replay log."""
from __future__ import annotations

import errno

import pytest

from middlewared.errors import CallError
from middlewared.event_log import EventLog


def test_numbers_and_replay() -> None:
    log = EventLog(capacity=3)
    payloads = [{"msg": "changed", "id": i} for i in range(5)]
    log.stamp("vm.query", "CHANGED", payloads[0])
    log.stamp("vm.stats", "CHANGED", payloads[1], keep=False)
    log.stamp("core.get_jobs", "ADDED", payloads[2])
    log.stamp("vm.query", "CHANGED", payloads[3])
    assert [p["seq"] for p in payloads[:4]] == [1, 2, 3, 4]
    assert [e.seq for e in log.since(0, "vm.query")] == [1, 4]
    assert [e.seq for e in log.since(1, "*")] == [3, 4]
    assert list(log.since(4, "vm.query")) == []

    log.stamp("vm.query", "CHANGED", payloads[4])  # the fourth kept event pushes out the first
    assert [e.seq for e in log.since(1, "*")] == [3, 4, 5]
    with pytest.raises(CallError) as e:
        log.since(0, "vm.query")
    assert e.value.errno == errno.ESTALE and "no longer kept" in str(e.value)
    with pytest.raises(CallError) as e:
        log.check(6)
    assert e.value.errno == errno.EINVAL
