"""Per-VM ordering of the operations that must not interleave on one VM.

Starting, stopping and cloning a VM, and writing or copying its devices (vm.device.*), may overlap one another
(a power-off must not wait for a graceful stop that hangs), so they hold a VM's guard shared. A snapshot create, revert or delete, an update and a delete hold
it alone: a start issued while a revert rewrites the disks waits for the revert, then runs, instead of failing
on QEMU's image lock halfway through. Waiters queue in order: once an exclusive holder waits, later shared
callers queue behind it, so a stream of starts cannot starve a snapshot.
"""
from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from typing import AsyncIterator


class VMGuard:
    """A shared/exclusive lock of one VM, fair to exclusive waiters."""

    def __init__(self) -> None:
        self._changed = asyncio.Condition()
        self._shared = 0
        self._exclusive = False
        self._exclusive_waiting = 0

    @asynccontextmanager
    async def shared(self) -> AsyncIterator[None]:
        """Hold the guard beside other shared holders, after every exclusive holder or waiter before."""
        async with self._changed:
            await self._changed.wait_for(lambda: not self._exclusive and not self._exclusive_waiting)
            self._shared += 1
        try:
            yield
        finally:
            async with self._changed:
                self._shared -= 1
                self._changed.notify_all()

    @asynccontextmanager
    async def exclusive(self) -> AsyncIterator[None]:
        """Hold the guard alone."""
        async with self._changed:
            self._exclusive_waiting += 1
            try:
                await self._changed.wait_for(lambda: not self._exclusive and not self._shared)
            finally:
                self._exclusive_waiting -= 1
                # A cancelled waiter no longer holds shared callers back.
                self._changed.notify_all()
            self._exclusive = True
        try:
            yield
        finally:
            async with self._changed:
                self._exclusive = False
                self._changed.notify_all()


class VMGuards:
    """The guards of every VM, by id, made on first use."""

    def __init__(self) -> None:
        self._guards: dict[int, VMGuard] = {}

    def __call__(self, vm_id: int) -> VMGuard:
        return self._guards.setdefault(vm_id, VMGuard())
