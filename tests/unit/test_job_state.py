"""The job state machine and the job manager's lock queues, abort and retention."""
from __future__ import annotations

import asyncio
import errno
from typing import Any

import pytest

from middlewared.errors import CallError, ValidationErrors
from middlewared.job import TRANSITIONS, InvalidTransition, Job, JobState
from middlewared.jobs import KEEP_FINISHED, JobManager
from middlewared.service import JobOptions


class Recorder:
    """Stands in for the Middleware's event hub: records job events."""

    def __init__(self) -> None:
        self.events: list[tuple[str, int, str]] = []

    def send_job_event(self, kind: str, job: Job) -> None:
        self.events.append((kind, job.id, job.state.value))


def manager(tmp_path: Any) -> tuple[JobManager, Recorder]:
    rec = Recorder()
    return JobManager(rec, str(tmp_path)), rec  # type: ignore[arg-type]


def test_transition_table_is_closed() -> None:
    for state, targets in TRANSITIONS.items():
        for target in JobState:
            assert (target in targets) == (target in TRANSITIONS[state])
    assert not TRANSITIONS[JobState.SUCCESS] and not TRANSITIONS[JobState.FAILED]


async def test_success_and_events(tmp_path: Any) -> None:
    jm, rec = manager(tmp_path)

    async def fn(job: Job) -> int:
        job.set_progress(50, "half")
        return 7
    job = jm.submit("x.y", [], JobOptions(), fn, None, message_id="m1")
    assert await job.wait() == 7
    assert job.state == JobState.SUCCESS and job.progress["percent"] == 100
    assert rec.events[0] == ("ADDED", job.id, "WAITING")
    assert rec.events[-1] == ("CHANGED", job.id, "SUCCESS")
    assert job.encode()["message_ids"] == ["m1"]
    with pytest.raises(InvalidTransition):
        job.set_state(JobState.RUNNING)


async def test_failure_encodes_validation_errors(tmp_path: Any) -> None:
    jm, _ = manager(tmp_path)

    async def fn(job: Job) -> None:
        raise ValidationErrors().__class__([])  # empty is still an error object
    job = jm.submit("x.y", [], JobOptions(), fn, None)
    await job.wait()
    assert job.state == JobState.FAILED and job.exc_info and job.exc_info["type"] == "VALIDATION"


async def test_lock_queue_runs_in_order_and_merges_when_full(tmp_path: Any) -> None:
    jm, _ = manager(tmp_path)
    order: list[int] = []
    gate = asyncio.Event()

    async def fn(job: Job) -> None:
        await gate.wait()
        order.append(job.id)
    opts = JobOptions(lock="L", lock_queue_size=2)
    jobs = [jm.submit("x", [], opts, fn, None, message_id=i) for i in range(5)]
    first, queued = jobs[0], jobs[1:3]
    assert first.state == JobState.RUNNING and all(j.state == JobState.WAITING for j in queued)
    # The queue holds two: later calls join the last queued job instead of queueing.
    assert jobs[3] is jobs[2] and jobs[4] is jobs[2]
    assert jobs[2].message_ids == [2, 3, 4]
    gate.set()
    await jobs[2].wait()
    assert order == [first.id, jobs[1].id, jobs[2].id]


async def test_lock_queue_size_zero_refuses(tmp_path: Any) -> None:
    jm, _ = manager(tmp_path)
    gate = asyncio.Event()

    async def fn(job: Job) -> None:
        await gate.wait()
    opts = JobOptions(lock="L", lock_queue_size=0)
    jm.submit("x", [], opts, fn, None)
    with pytest.raises(CallError) as e:
        jm.submit("x", [], opts, fn, None)
    assert e.value.errno == errno.EBUSY
    gate.set()


async def test_abort_running_and_waiting(tmp_path: Any) -> None:
    jm, _ = manager(tmp_path)

    async def forever(job: Job) -> None:
        await asyncio.Event().wait()
    opts = JobOptions(lock="L")
    running = jm.submit("x", [], opts, forever, None)
    waiting = jm.submit("x", [], opts, forever, None)
    await asyncio.sleep(0)
    waiting.abort()
    assert waiting.state == JobState.ABORTED
    running.abort()
    await running.wait()
    assert running.state == JobState.ABORTED
    with pytest.raises(CallError):
        await running.wait(raise_error=True)


async def test_logs_excerpt(tmp_path: Any) -> None:
    jm, _ = manager(tmp_path)

    async def fn(job: Job) -> None:
        for i in range(30):
            job.log(f"line {i}")
    job = jm.submit("x", [], JobOptions(logs=True), fn, None)
    await job.wait()
    assert job.logs_excerpt is not None
    lines = job.logs_excerpt.splitlines()
    assert lines[0] == "line 0" and lines[10] == "... 10 more lines ..." and lines[-1] == "line 29"


async def test_retention_keeps_last_finished(tmp_path: Any) -> None:
    jm, _ = manager(tmp_path)

    async def fn(job: Job) -> None:
        return None
    last = None
    for _ in range(KEEP_FINISHED + 5):
        last = jm.submit("x", [], JobOptions(), fn, None)
        await last.wait()
    assert len(jm.jobs) == KEEP_FINISHED
    assert min(jm.jobs) == 6 and last is not None and last.id in jm.jobs


async def test_progress_events_are_throttled(tmp_path: Any) -> None:
    jm, rec = manager(tmp_path)

    async def fn(job: Job) -> None:
        for i in range(100):
            job.set_progress(i)
    job = jm.submit("x", [], JobOptions(), fn, None)
    await job.wait()
    assert len(rec.events) < 10
