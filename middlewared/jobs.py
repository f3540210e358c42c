"""The job manager: ids, lock queues, scheduling, retention of the last 1000 finished jobs."""
from __future__ import annotations

import asyncio
import errno
import logging
import os
import shutil
from collections import OrderedDict, deque
from typing import TYPE_CHECKING, Any, Awaitable, Callable

from middlewared.credentials import Credentials
from middlewared.errors import CallError
from middlewared.job import FINAL, Job, JobState
from middlewared.service import JobOptions

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

KEEP_FINISHED = 1000

JobFunction = Callable[[Job], Awaitable[Any]]


class JobManager:
    """Creates jobs, runs them when their lock is free, and keeps their records."""

    def __init__(self, middleware: "Middleware", logs_dir: str) -> None:
        self.middleware = middleware
        self.logs_dir = logs_dir
        self.jobs: OrderedDict[int, Job] = OrderedDict()
        self._next_id = 1
        self._functions: dict[int, JobFunction] = {}
        self._lock_holders: dict[str, Job] = {}
        self._lock_queues: dict[str, deque[Job]] = {}
        self._finished: deque[int] = deque()

    def prepare_logs_dir(self) -> None:
        """Start with an empty log directory: job ids restart at 1 with each daemon."""
        shutil.rmtree(self.logs_dir, ignore_errors=True)
        os.makedirs(self.logs_dir, mode=0o700, exist_ok=True)

    def submit(self, method: str, args: list[Any], options: JobOptions, fn: JobFunction,
               credentials: Credentials | None, message_id: Any = None,
               redacted_args: list[Any] | None = None) -> Job:
        """Queue a call as a job, or join the last queued job of a full lock queue."""
        lock = options.lock_name(args)
        if lock is not None:
            joined = self._join_full_queue(lock, options, message_id)
            if joined is not None:
                return joined
        job = Job(self, self._next_id, method, args, options, credentials,
                  redacted_args if redacted_args is not None else args)
        self._next_id += 1
        if message_id is not None:
            job.message_ids.append(message_id)
        self.jobs[job.id] = job
        self._functions[job.id] = fn
        self._event("ADDED", job)
        if lock is None or lock not in self._lock_holders:
            self._start(job)
        else:
            self._lock_queues.setdefault(lock, deque()).append(job)
        return job

    def _join_full_queue(self, lock: str, options: JobOptions, message_id: Any) -> Job | None:
        holder = self._lock_holders.get(lock)
        if holder is None:
            return None
        waiting = self._lock_queues.get(lock) or deque()
        if options.lock_queue_size == 0:
            raise CallError("This job is already being performed", errno.EBUSY)
        if options.lock_queue_size is not None and len(waiting) >= options.lock_queue_size:
            job = waiting[-1]
            if message_id is not None:
                job.message_ids.append(message_id)
            self._event("CHANGED", job)
            return job
        return None

    def _start(self, job: Job) -> None:
        if job.lock is not None:
            self._lock_holders[job.lock] = job
        fn = self._functions.pop(job.id)
        job.set_state(JobState.RUNNING)
        job.task = asyncio.create_task(self._run(job, fn), name=f"job-{job.id}-{job.method}")

    async def _run(self, job: Job, fn: JobFunction) -> None:
        try:
            result = await fn(job)
        except asyncio.CancelledError:
            job.set_state(JobState.ABORTED)
        except Exception as e:
            if not isinstance(e, CallError) and type(e).__name__ != "ValidationErrors":
                logger.debug("job %d (%s) failed", job.id, job.method, exc_info=True)
            job.fail(e)
        else:
            job.succeed(result)
        finally:
            if job.pipes_output is not None:
                job.pipes_output.close_nowait()
            self.released(job)

    def released(self, job: Job) -> None:
        """A job reached a final state: free its lock, start the next waiter, prune history."""
        self._functions.pop(job.id, None)
        if job.lock is not None:
            if self._lock_holders.get(job.lock) is job:
                del self._lock_holders[job.lock]
            queue = self._lock_queues.get(job.lock)
            if queue is not None and job in queue:
                queue.remove(job)
            if job.lock not in self._lock_holders:
                while queue:
                    nxt = queue.popleft()
                    if nxt.state == JobState.WAITING:
                        self._start(nxt)
                        break
                if not queue:
                    self._lock_queues.pop(job.lock, None)
        self._finished.append(job.id)
        while len(self._finished) > KEEP_FINISHED:
            old = self.jobs.pop(self._finished.popleft(), None)
            if old is not None and old.logs_path:
                try:
                    os.unlink(old.logs_path)
                except FileNotFoundError:
                    pass

    def changed(self, job: Job) -> None:
        """Called by a job on every state or progress change."""
        job.notify_watchers()
        self._event("CHANGED", job)
        if job.options.transient and job.state in FINAL:
            self.jobs.pop(job.id, None)

    def _event(self, kind: str, job: Job) -> None:
        if job.options.transient:
            return
        self.middleware.send_job_event(kind, job)

    def get(self, job_id: int) -> Job | None:
        """The job with this id, if it is still kept."""
        return self.jobs.get(job_id)

    async def shutdown(self, timeout: float = 5.0) -> None:
        """Abort running and waiting jobs, waiting up to timeout for them to end."""
        live = [j for j in self.jobs.values() if j.state not in FINAL]
        for job in live:
            job.abort()
        tasks = [j.task for j in live if j.task is not None and not j.task.done()]
        if tasks:
            await asyncio.wait(tasks, timeout=timeout)
