"""Serial consoles shared by several viewers: the guest's serial pty, fanned out, with one typist at a time.

Every domain has a ``<serial type='pty'>`` (domain_xml.py); QEMU holds the pty's master side and libvirt names
the slave in the live XML (``<source path='/dev/pts/N'/>``). While a VM has viewers the daemon keeps that slave
open in raw mode on the event loop, as libvirt's own console stream does, and relays bytes both ways: output to
every viewer, input from the one viewer holding the keyboard. The last REPLAY_BYTES of output are kept (seeded
from the console log file virtlogd writes, which goes on being written as before) and replayed to each viewer
that joins. When the VM stops the pty goes away (reads fail with EIO); viewers stay connected, are told, and
output resumes on the next start's new pty.

Viewers are told who holds the keyboard by short bracketed lines in the output itself, so a terminal needs no
protocol beyond raw bytes.
"""
from __future__ import annotations

import asyncio
import errno
import itertools
import logging
import os
import termios
import tty
from dataclasses import dataclass, field
from typing import Awaitable, Callable

logger = logging.getLogger(__name__)

REPLAY_BYTES = 64 * 1024
# A viewer this far behind (a stalled browser) is disconnected rather than buffered without bound.
MAX_PENDING = 4 * 1024 * 1024
CHUNK = 65536

# Finds the pty of a running VM (None when it is not running); reads the console log's last bytes.
Locate = Callable[[], Awaitable[str | None]]
ReadLog = Callable[[int], Awaitable[bytes]]


def read_tail(path: str, size: int) -> bytes:
    """The last `size` bytes of a file; empty when it does not exist."""
    try:
        with open(path, "rb") as f:
            f.seek(max(0, f.seek(0, os.SEEK_END) - size))
            return f.read()
    except FileNotFoundError:
        return b""


def notice(text: str) -> bytes:
    """A line for the viewers' terminals, set apart from the guest's output."""
    return f"\r\n[console: {text}]\r\n".encode()


@dataclass(eq=False)
class Viewer:
    """One connected viewer: who it is, whether it may type, and what is waiting to be sent to it."""

    username: str
    may_type: bool = True
    id: int = 0
    queue: asyncio.Queue[bytes | None] = field(default_factory=asyncio.Queue)
    pending: int = 0

    def send(self, data: bytes) -> None:
        """Queue output; a viewer that has fallen MAX_PENDING behind is ended (None ends its sender)."""
        if self.pending > MAX_PENDING:
            return
        self.pending += len(data)
        self.queue.put_nowait(data if self.pending <= MAX_PENDING else None)

    def sent(self, data: bytes) -> None:
        """Account for bytes written out."""
        self.pending -= len(data)

    def end(self) -> None:
        """Ask the viewer's sender to close."""
        self.queue.put_nowait(None)


class SerialSession:
    """The serial console of one VM while it has viewers."""

    def __init__(self, vm_id: int, locate: Locate, read_log: ReadLog) -> None:
        self.vm_id = vm_id
        self.locate = locate
        self.read_log = read_log
        self.viewers: list[Viewer] = []
        self.typist: Viewer | None = None
        self.ring = bytearray()
        self.fd: int | None = None
        self.bytes_in = self.bytes_out = 0
        self._out = bytearray()  # keystrokes the pty did not take yet
        self._ids = itertools.count(1)
        self._attaching: asyncio.Task[None] | None = None
        self._seeded = False
        self._joining = asyncio.Lock()

    # -- viewers -------------------------------------------------------------------------------
    async def join(self, viewer: Viewer) -> None:
        """Add a viewer: replay, tell it who types, attach to the pty if the VM runs."""
        viewer.id = next(self._ids)
        # Joins are taken in the order they came (asyncio's lock is first come, first served): the first viewer
        # gets the keyboard even when a second arrives while the first one's replay is still being read.
        async with self._joining:
            if not self._seeded:
                self._remember(await self.read_log(REPLAY_BYTES))
                self._seeded = True
            self.viewers.append(viewer)
            if self.ring:
                viewer.send(bytes(self.ring))
            if self.typist is None and viewer.may_type:
                self.typist = viewer
                viewer.send(notice(f"connected; you have the keyboard (viewers: {len(self.viewers)})"))
            else:
                viewer.send(notice(f"connected read-only; {self._holder()} (viewers: {len(self.viewers)})"))
        if self.fd is None:
            await self.attach()
            if self.fd is None:
                viewer.send(notice("the VM is not running; output resumes when it starts"))

    def leave(self, viewer: Viewer) -> None:
        """Remove a viewer; the keyboard passes to the longest-connected viewer that may type."""
        if viewer not in self.viewers:
            return
        self.viewers.remove(viewer)
        if self.typist is viewer:
            self.typist = next((v for v in self.viewers if v.may_type), None)
            if self.typist is not None:
                self.typist.send(notice(f"{viewer.username} left; you have the keyboard"))
                self.broadcast(notice(f"{self.typist.username} has the keyboard"), self.typist)

    def _holder(self) -> str:
        return f"{self.typist.username} has the keyboard" if self.typist else "nobody may type"

    def broadcast(self, data: bytes, skip: Viewer | None = None) -> None:
        """Send output (or a notice) to every viewer but skip."""
        for viewer in self.viewers:
            if viewer is not skip:
                viewer.send(data)

    def type(self, viewer: Viewer, data: bytes) -> None:
        """Keystrokes from a viewer: to the guest when it holds the keyboard and the VM runs."""
        if viewer is not self.typist:
            viewer.send(notice(f"read-only: {self._holder()}"))
            return
        if self.fd is None:
            viewer.send(notice("the VM is not running"))
            return
        self.bytes_in += len(data)
        self._out.extend(data)
        self._write()

    # -- the pty -------------------------------------------------------------------------------
    async def attach(self) -> None:
        """Open the running VM's pty (once, however many callers ask at the same time)."""
        if self.fd is not None:
            return
        if self._attaching is None or self._attaching.done():
            self._attaching = asyncio.get_running_loop().create_task(self._attach())
        await asyncio.shield(self._attaching)

    async def _attach(self) -> None:
        path = await self.locate()
        if path is None or self.fd is not None or not self.viewers:
            return
        try:
            fd = os.open(path, os.O_RDWR | os.O_NOCTTY | os.O_NONBLOCK)
        except OSError as e:
            logger.warning("serial console of VM %d: cannot open %s: %s", self.vm_id, path, e)
            return
        try:
            # QEMU already made the pty raw; stated again so no line discipline ever echoes or edits.
            tty.setraw(fd, termios.TCSANOW)
        except termios.error:
            pass
        self.fd = fd
        asyncio.get_running_loop().add_reader(fd, self._readable)
        logger.info("serial console of VM %d: attached to %s (%d viewers)", self.vm_id, path, len(self.viewers))

    def detach(self, why: str | None) -> None:
        """Close the pty (VM stopped, or no viewers left); tell the viewers why."""
        fd, self.fd = self.fd, None
        self._out.clear()
        if fd is None:
            return
        loop = asyncio.get_running_loop()
        loop.remove_reader(fd)
        loop.remove_writer(fd)
        os.close(fd)
        if why:
            self.broadcast(notice(why))

    def _readable(self) -> None:
        fd = self.fd
        if fd is None:
            return
        try:
            data = os.read(fd, CHUNK)
        except BlockingIOError:
            return
        except OSError as e:
            # EIO: QEMU closed the master side, the VM stopped.
            if e.errno != errno.EIO:
                logger.warning("serial console of VM %d: %s", self.vm_id, e)
            data = b""
        if not data:
            self.detach("the VM stopped; output resumes when it starts")
            return
        self.bytes_out += len(data)
        self._remember(data)
        self.broadcast(data)

    def _write(self) -> None:
        fd = self.fd
        if fd is None or not self._out:
            return
        loop = asyncio.get_running_loop()
        try:
            written = os.write(fd, self._out)
        except BlockingIOError:
            written = 0
        except OSError:
            self._out.clear()
            return
        del self._out[:written]
        if self._out:
            loop.add_writer(fd, self._write)
        else:
            loop.remove_writer(fd)

    def _remember(self, data: bytes) -> None:
        self.ring.extend(data)
        if len(self.ring) > REPLAY_BYTES:
            del self.ring[:len(self.ring) - REPLAY_BYTES]

    def close(self) -> None:
        """End the session: pty closed, every viewer's socket asked to close."""
        self.detach(None)
        for viewer in self.viewers:
            viewer.end()
        self.viewers.clear()
        self.typist = None


class SerialHub:
    """The sessions of all VMs that have viewers."""

    def __init__(self) -> None:
        self.sessions: dict[int, SerialSession] = {}
        self.tasks: set[asyncio.Task[None]] = set()

    def session(self, vm_id: int, locate: Locate, read_log: ReadLog) -> SerialSession:
        """The VM's session, created on its first viewer."""
        found = self.sessions.get(vm_id)
        if found is None:
            found = self.sessions[vm_id] = SerialSession(vm_id, locate, read_log)
        return found

    def leave(self, session: SerialSession, viewer: Viewer) -> None:
        """A viewer went away; the last one closes the session (the pty is let go)."""
        session.leave(viewer)
        if not session.viewers and self.sessions.get(session.vm_id) is session:
            del self.sessions[session.vm_id]
            session.close()

    def on_state(self, vm_id: int, running: bool) -> None:
        """A VM started or stopped: attach to its new pty, or tell the viewers."""
        session = self.sessions.get(vm_id)
        if session is None:
            return
        if running:
            task = asyncio.get_running_loop().create_task(self._reattach(session))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
        else:
            session.detach("the VM stopped; output resumes when it starts")

    async def _reattach(self, session: SerialSession) -> None:
        if session.fd is not None:
            return
        try:
            await session.attach()
        except Exception:
            logger.exception("serial console of VM %d: cannot attach", session.vm_id)
            return
        if session.fd is not None:
            session.broadcast(notice("the VM started"))

    def end(self, vm_id: int, why: str) -> None:
        """Close a VM's session and its viewers' sockets (the VM is gone)."""
        session = self.sessions.pop(vm_id, None)
        if session is not None:
            session.broadcast(notice(why))
            session.close()

    def close_all(self) -> None:
        """Daemon shutdown."""
        for task in self.tasks:
            task.cancel()
        for session in list(self.sessions.values()):
            session.close()
        self.sessions.clear()
