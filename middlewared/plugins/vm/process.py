"""When a process started, read from /proc: what vm.query's ``status.started_at`` (a VM's uptime) rests on.

The kernel records each process's start in clock ticks since boot (field 22 of /proc/<pid>/stat). Taken from the
QEMU process itself rather than from when this daemon saw the domain start, the time survives daemon restarts
and is right for domains started by someone else (adopted ones).
"""
from __future__ import annotations

import os
import time

PROC = "/proc"
TICKS_PER_SECOND = os.sysconf("SC_CLK_TCK")


def start_ticks(stat: str) -> int:
    """The start time field of a /proc/<pid>/stat line. The command name (field 2) may hold spaces and
    parentheses, so fields are counted from its last closing parenthesis."""
    rest = stat[stat.rindex(")") + 2:].split()
    # rest[0] is field 3 (the state): field 22 is rest[19].
    return int(rest[19])


def boot_time() -> float:
    """Unix time the host booted, to sub-second precision (the btime line of /proc/stat has whole seconds)."""
    return time.time() - time.clock_gettime(time.CLOCK_BOOTTIME)


def started_at(pid: int, proc: str = PROC) -> float | None:
    """Unix time process pid started, or None when it is gone (or its stat cannot be read)."""
    try:
        with open(os.path.join(proc, str(pid), "stat")) as f:
            ticks = start_ticks(f.read())
    except (OSError, ValueError, IndexError):
        return None
    return round(boot_time() + ticks / TICKS_PER_SECOND, 2)
