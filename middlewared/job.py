"""Jobs: an explicit state machine, progress with throttled events, locks, abort, logs and pipes."""
from __future__ import annotations

import asyncio
import enum
import errno
import logging
import os
import time
import traceback
from collections import deque
from typing import TYPE_CHECKING, Any, Callable

from middlewared.credentials import Credentials
from middlewared.errors import CallError, ValidationErrors
from middlewared.pipe import OutputPipe
from middlewared.service import JobOptions

if TYPE_CHECKING:
    from middlewared.jobs import JobManager

logger = logging.getLogger(__name__)

PROGRESS_EVENT_INTERVAL = 0.25  # seconds between two progress-only CHANGED events of one job


class JobState(str, enum.Enum):
    """The five states of a job."""

    WAITING = "WAITING"
    RUNNING = "RUNNING"
    SUCCESS = "SUCCESS"
    FAILED = "FAILED"
    ABORTED = "ABORTED"


TRANSITIONS: dict[JobState, frozenset[JobState]] = {
    JobState.WAITING: frozenset({JobState.RUNNING, JobState.FAILED, JobState.ABORTED}),
    JobState.RUNNING: frozenset({JobState.SUCCESS, JobState.FAILED, JobState.ABORTED}),
    JobState.SUCCESS: frozenset(),
    JobState.FAILED: frozenset(),
    JobState.ABORTED: frozenset(),
}
FINAL = frozenset({JobState.SUCCESS, JobState.FAILED, JobState.ABORTED})


class InvalidTransition(Exception):
    """A job was asked to move to a state its current state does not lead to."""


def _ms(t: float | None) -> dict[str, int] | None:
    return None if t is None else {"$date": int(t * 1000)}


class Job:
    """One call of a job method: its state, progress, result and outputs."""

    def __init__(self, manager: "JobManager", id_: int, method: str, args: list[Any],
                 options: JobOptions, credentials: Credentials | None, redacted_args: list[Any]) -> None:
        self.manager = manager
        self.id = id_
        self.method = method
        self.args = args
        self.redacted_args = redacted_args
        self.options = options
        self.credentials = credentials
        self.lock = options.lock_name(args)
        self.message_ids: list[Any] = []
        self.state = JobState.WAITING
        self.progress: dict[str, Any] = {"percent": 0, "description": "", "extra": None}
        self.result: Any = None
        self.error: str | None = None
        self.exception: str | None = None
        self.exc_info: dict[str, Any] | None = None
        self.raised: BaseException | None = None
        self.time_started = time.time()
        self.time_finished: float | None = None
        self.description = options.description(args) if options.description else None
        self.logs_path = os.path.join(manager.logs_dir, f"{id_}.log") if options.logs else None
        self.logs_excerpt: str | None = None
        self.pipes_output = OutputPipe() if "output" in options.pipes else None
        self.abort_requested = False
        self.task: asyncio.Task[Any] | None = None
        self.done = asyncio.Event()
        self._last_progress_event = 0.0
        self._watchers: list[asyncio.Future[None]] = []
        self._progress_timer: asyncio.TimerHandle | None = None

    # -- state machine -------------------------------------------------------------------------
    def set_state(self, new: JobState) -> None:
        """Move to a new state, refusing transitions the table does not allow."""
        if new not in TRANSITIONS[self.state]:
            raise InvalidTransition(f"job {self.id}: {self.state.value} -> {new.value}")
        self.state = new
        if new in FINAL:
            self.time_finished = time.time()
            if new == JobState.SUCCESS and self.progress["percent"] != 100:
                self.progress = {**self.progress, "percent": 100, "description": ""}
            if self._progress_timer:
                self._progress_timer.cancel()
            self.logs_excerpt = self._excerpt()
            self.done.set()
        self.manager.changed(self)

    def set_progress(self, percent: float | None = None, description: str | None = None,
                     extra: Any = None) -> None:
        """Report progress; events are sent only on change and at most every 0.25 s."""
        new = dict(self.progress)
        if percent is not None:
            new["percent"] = max(0, min(100, int(percent)))
        if description is not None:
            new["description"] = description
        if extra is not None:
            new["extra"] = extra
        if new == self.progress:
            return
        self.progress = new
        now = time.monotonic()
        if now - self._last_progress_event >= PROGRESS_EVENT_INTERVAL:
            self._send_progress()
        elif self._progress_timer is None:
            delay = PROGRESS_EVENT_INTERVAL - (now - self._last_progress_event)
            self._progress_timer = asyncio.get_running_loop().call_later(delay, self._send_progress)

    def _send_progress(self) -> None:
        self._progress_timer = None
        self._last_progress_event = time.monotonic()
        if self.state not in FINAL:
            self.manager.changed(self)

    # -- logs ------------------------------------------------------------------------------------
    def log(self, text: str) -> None:
        """Append a line to the job's log file (jobs declared with logs=True)."""
        if self.logs_path is None:
            raise RuntimeError(f"{self.method} does not keep logs")
        with open(self.logs_path, "a", encoding="utf-8") as f:
            f.write(text if text.endswith("\n") else text + "\n")

    def _excerpt(self) -> str | None:
        if self.logs_path is None or not os.path.exists(self.logs_path):
            return None
        with open(self.logs_path, encoding="utf-8", errors="replace") as f:
            lines = f.read().splitlines()
        if len(lines) <= 20:
            return "\n".join(lines)
        return "\n".join(lines[:10] + [f"... {len(lines) - 20} more lines ..."] + lines[-10:])

    # -- outcome ---------------------------------------------------------------------------------
    def succeed(self, result: Any) -> None:
        self.result = result
        self.set_state(JobState.SUCCESS)

    def fail(self, exc: BaseException) -> None:
        """Record an exception as the job's failure, in the shape TrueNAS clients read."""
        self.raised = exc
        self.error = str(exc) or repr(exc)
        self.exception = "".join(traceback.format_exception(exc))
        if isinstance(exc, ValidationErrors):
            self.exc_info = {"repr": repr(exc), "type": "VALIDATION",
                             "errno": errno.EINVAL, "extra": [e.as_list() for e in exc.errors]}
        else:
            self.exc_info = {"repr": repr(exc), "type": type(exc).__name__,
                             "errno": getattr(exc, "errno", None) if isinstance(exc, CallError) else None,
                             "extra": getattr(exc, "extra", None)}
        self.set_state(JobState.FAILED)

    def abort(self) -> None:
        """Cancel a running job, or mark a waiting one so it aborts instead of starting."""
        self.abort_requested = True
        if self.state == JobState.WAITING:
            self.set_state(JobState.ABORTED)
            self.manager.released(self)
        elif self.task is not None and not self.task.done():
            self.task.cancel()

    def notify_watchers(self) -> None:
        """Wake everything waiting in next_change() (called on every announced change)."""
        watchers, self._watchers = self._watchers, []
        for fut in watchers:
            if not fut.done():
                fut.set_result(None)

    async def next_change(self) -> None:
        """Wait until the job's state or progress is next announced."""
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._watchers.append(fut)
        await fut

    async def wait(self, raise_error: bool = False) -> Any:
        """Wait for the end; return the result, or raise what the job raised when asked to."""
        await self.done.wait()
        if raise_error:
            if self.state == JobState.ABORTED:
                raise CallError("Job was aborted", errno.ECANCELED)
            if self.state == JobState.FAILED and self.raised is not None:
                raise self.raised
        return self.result

    def visible_to(self, credentials: Credentials) -> bool:
        """Admins see every job; others their own and those their roles may read."""
        if credentials.is_full_admin or credentials.has_role(["READONLY_ADMIN"]):
            return True
        if self.credentials is not None and self.credentials.username == credentials.username:
            return True
        return bool(self.options.read_roles) and credentials.has_role(self.options.read_roles)

    def encode(self) -> dict[str, Any]:
        """The job as core.get_jobs and its events show it."""
        return {
            "id": self.id, "message_ids": list(self.message_ids), "method": self.method,
            "arguments": self.redacted_args, "transient": self.options.transient,
            "description": self.description, "abortable": self.options.abortable,
            "logs_path": self.logs_path, "logs_excerpt": self.logs_excerpt,
            "progress": dict(self.progress), "result": self.result, "result_encoding_error": None,
            "error": self.error, "exception": self.exception, "exc_info": self.exc_info,
            "state": self.state.value, "time_started": _ms(self.time_started),
            "time_finished": _ms(self.time_finished),
            "credentials": self.credentials.encode() if self.credentials else None,
        }


JobRunner = Callable[[Job], Any]
