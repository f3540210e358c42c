"""Host changes a device request makes (volumes, raw files), each with its undo, run after validation."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
from dataclasses import dataclass
from typing import Any, Protocol

from middlewared.plugins.vm.hypervisor import Hypervisor
from middlewared.plugins.vm_device import pool
from middlewared.plugins.vm_device.paths import create_sparse

logger = logging.getLogger(__name__)


class Action(Protocol):
    """One host change and its undo."""

    async def apply(self, hv: Hypervisor) -> None:
        """Make the change (raise to fail the request)."""
        ...

    async def undo(self, hv: Hypervisor) -> None:
        """Revert the change."""
        ...


@dataclass
class CreateVolume:
    """A new volume for a DISK with create_zvol; its path goes into the row's attributes."""

    pool: str
    name: str
    size: int
    # The attributes the plan will store: the volume's path is only known once it exists.
    attributes: dict[str, Any]
    fmt: str = "qcow2"

    async def apply(self, hv: Hypervisor) -> None:
        volume = await hv.run(pool.create_volume, self.pool, self.name, self.size, self.fmt)
        self.attributes["path"] = volume.path

    async def undo(self, hv: Hypervisor) -> None:
        await hv.run(pool.delete_volume, self.pool, self.name)


@dataclass(frozen=True)
class CreateFile:
    """A new sparse file for a RAW device with exists false."""

    path: str
    size: int

    async def apply(self, hv: Hypervisor) -> None:
        await asyncio.to_thread(create_sparse, self.path, self.size)

    async def undo(self, hv: Hypervisor) -> None:
        await asyncio.to_thread(os.unlink, self.path)


@dataclass(frozen=True)
class GrowFile:
    """A RAW file made larger (sparse) for a bigger `size`."""

    path: str
    old_size: int
    size: int

    async def apply(self, hv: Hypervisor) -> None:
        await asyncio.to_thread(os.truncate, self.path, self.size)

    async def undo(self, hv: Hypervisor) -> None:
        await asyncio.to_thread(os.truncate, self.path, self.old_size)


@dataclass(frozen=True)
class RemoveFile:
    """A file the daemon made for a removed device (a cloud-init seed)."""

    path: str

    async def apply(self, hv: Hypervisor) -> None:
        with contextlib.suppress(FileNotFoundError):
            await asyncio.to_thread(os.unlink, self.path)

    async def undo(self, hv: Hypervisor) -> None:
        # Nothing to put back: such files are made again from the device's data before the next start.
        return None


class Resources:
    """The actions of one plan: applied in order; on failure, those made are undone in reverse."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions
        self._done: list[Action] = []

    async def provision(self, hv: Hypervisor) -> None:
        """Apply every action; if one fails, undo the others and raise."""
        for action in self.actions:
            try:
                await action.apply(hv)
            except BaseException:
                await self.undo(hv)
                raise
            self._done.append(action)

    async def undo(self, hv: Hypervisor) -> None:
        """Undo what provision() made (failures are logged: the request fails anyway)."""
        while self._done:
            action = self._done.pop()
            try:
                await action.undo(hv)
            except Exception:
                logger.exception("cannot undo %s", action)
