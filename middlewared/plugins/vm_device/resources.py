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
from middlewared.plugins.vm_device.intents import FILE, VOLUME, Intents, Leftover
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

    @property
    def leftover(self) -> Leftover | None:
        """What apply makes that must go again if the write never commits (an intent is recorded first)."""
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

    @property
    def leftover(self) -> Leftover | None:
        return Leftover(VOLUME, f"{self.pool}/{self.name}")


@dataclass(frozen=True)
class CreateFile:
    """A new sparse file for a RAW device with exists false."""

    path: str
    size: int

    async def apply(self, hv: Hypervisor) -> None:
        await asyncio.to_thread(create_sparse, self.path, self.size)

    async def undo(self, hv: Hypervisor) -> None:
        await asyncio.to_thread(os.unlink, self.path)

    @property
    def leftover(self) -> Leftover | None:
        return Leftover(FILE, self.path)


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

    @property
    def leftover(self) -> Leftover | None:
        return None


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

    @property
    def leftover(self) -> Leftover | None:
        return None


class Resources:
    """The actions of one plan: applied in order; on failure, those made are undone in reverse."""

    def __init__(self, actions: list[Action]) -> None:
        self.actions = actions
        self._done: list[Action] = []

    async def provision(self, hv: Hypervisor, intents: Intents) -> None:
        """Apply every action, each leftover's intent recorded before; if one fails, undo the others and raise.
        The transaction storing the rows that name the leftovers deletes their intents."""
        for action in self.actions:
            leftover = action.leftover
            try:
                async with intents.making(leftover) if leftover else contextlib.nullcontext():
                    await action.apply(hv)
            except BaseException:
                await self.undo(hv, intents)
                raise
            self._done.append(action)

    async def undo(self, hv: Hypervisor, intents: Intents) -> None:
        """Undo what provision() made (failures are logged: the request fails anyway, and the intent of what
        could not be removed stays for the next start)."""
        while self._done:
            action = self._done.pop()
            try:
                await action.undo(hv)
            except Exception:
                logger.exception("cannot undo %s", action)
                continue
            if action.leftover:
                await intents.forget([action.leftover.target])
