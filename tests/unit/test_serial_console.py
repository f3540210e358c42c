"""Serial console sessions over a real pty pair (the test plays QEMU on the master side)."""
from __future__ import annotations

import asyncio
import os
from typing import AsyncIterator

import pytest

from middlewared.plugins.vm.serial_console import REPLAY_BYTES, SerialHub, SerialSession, Viewer, read_tail


class Guest:
    """A pty whose master side stands for QEMU."""

    def __init__(self) -> None:
        self.master, slave = os.openpty()
        self.path = os.ttyname(slave)
        os.close(slave)
        os.set_blocking(self.master, False)
        self.running = True

    async def locate(self) -> str | None:
        return self.path if self.running else None

    async def read_log(self, size: int) -> bytes:
        return b"old boot\r\n"

    async def received(self, wanted: bytes, timeout: float = 5) -> bytes:
        data = b""
        deadline = asyncio.get_running_loop().time() + timeout
        while wanted not in data and asyncio.get_running_loop().time() < deadline:
            try:
                data += os.read(self.master, 4096)
            except BlockingIOError:
                await asyncio.sleep(0.01)
        return data

    def stop(self) -> None:
        self.running = False
        os.close(self.master)


async def drain(viewer: Viewer, wanted: bytes, timeout: float = 5) -> bytes:
    data = b""
    while wanted not in data:
        chunk = await asyncio.wait_for(viewer.queue.get(), timeout)
        assert chunk is not None
        data += chunk
    return data


@pytest.fixture
async def guest() -> AsyncIterator[Guest]:
    g = Guest()
    yield g
    if g.running:
        g.stop()


async def test_viewers_typist_and_replay(guest: Guest) -> None:
    session = SerialSession(1, guest.locate, guest.read_log)
    alice, bob = Viewer("alice"), Viewer("bob")
    await session.join(alice)
    assert b"old boot" in await drain(alice, b"you have the keyboard")
    await session.join(bob)
    assert b"alice has the keyboard" in await drain(bob, b"read-only")
    assert session.fd is not None

    os.write(guest.master, b"/ # ")
    for viewer in (alice, bob):
        await drain(viewer, b"/ # ")
    session.type(alice, b"echo $((6*7))\r")
    assert await guest.received(b"\r") == b"echo $((6*7))\r"
    session.type(bob, b"reboot\r")
    assert b"read-only: alice has the keyboard" in await drain(bob, b"read-only")
    assert await guest.received(b"x", timeout=0.3) == b""

    carol = Viewer("carol")
    await session.join(carol)
    assert b"old boot\r\n/ # " in await drain(carol, b"/ # ")  # log seed, then what came since
    session.leave(alice)
    assert b"alice left; you have the keyboard" in await drain(bob, b"you have the keyboard")
    assert b"bob has the keyboard" in await drain(carol, b"bob has")
    assert session.bytes_in == len(b"echo $((6*7))\r") and session.bytes_out == 4


async def test_the_first_to_join_types_while_the_replay_is_read_slowly(guest: Guest) -> None:
    guest.stop()

    async def slow_log(size: int) -> bytes:
        await asyncio.sleep(0.2)
        return b"old boot\r\n"

    session = SerialSession(3, guest.locate, slow_log)
    first, second = Viewer("first"), Viewer("second")
    # The second join comes while the first one waits for the console log.
    await asyncio.gather(session.join(first), session.join(second))
    assert session.typist is first and session.viewers == [first, second]
    assert b"old boot" in await drain(first, b"you have the keyboard")
    assert b"first has the keyboard" in await drain(second, b"read-only")


async def test_stop_and_start_again(guest: Guest) -> None:
    hub = SerialHub()
    session = hub.session(7, guest.locate, guest.read_log)
    viewer = Viewer("root")
    await session.join(viewer)
    guest.stop()  # QEMU exits: the slave reads EIO
    await drain(viewer, b"the VM stopped")
    assert session.fd is None
    session.type(viewer, b"x")
    await drain(viewer, b"not running")

    restarted = Guest()  # the next boot has a new pty
    guest.path, guest.master, guest.running = restarted.path, restarted.master, True
    hub.on_state(7, True)
    await drain(viewer, b"the VM started")
    session.type(viewer, b"ok\r")
    assert await guest.received(b"\r") == b"ok\r"
    hub.leave(session, viewer)
    assert session.fd is None and hub.sessions == {}


async def test_a_deleted_vm_ends_its_viewers(guest: Guest) -> None:
    hub = SerialHub()
    session = hub.session(8, guest.locate, guest.read_log)
    viewer = Viewer("root")
    await session.join(viewer)
    hub.end(8, "the VM was deleted")
    await drain(viewer, b"the VM was deleted")
    assert await asyncio.wait_for(viewer.queue.get(), 1) is None  # the socket's sender closes it
    assert hub.sessions == {} and session.fd is None


async def test_viewer_of_a_stopped_vm_and_read_only(guest: Guest) -> None:
    guest.running = False
    session = SerialSession(2, guest.locate, guest.read_log)
    watcher = Viewer("w", may_type=False)
    await session.join(watcher)
    assert b"nobody may type" in await drain(watcher, b"not running")
    assert session.typist is None and session.fd is None


async def nowhere() -> None:
    return None


async def no_log(size: int) -> bytes:
    return b""


def test_replay_is_bounded_and_read_tail(tmp_path: object) -> None:
    session = SerialSession(3, nowhere, no_log)
    session._remember(b"a" * REPLAY_BYTES)
    session._remember(b"tail")
    assert len(session.ring) == REPLAY_BYTES and session.ring.endswith(b"tail")
    path = os.path.join(str(tmp_path), "log")
    with open(path, "wb") as f:
        f.write(b"0123456789")
    assert read_tail(path, 4) == b"6789" and read_tail(path, 100) == b"0123456789"
    assert read_tail(path + ".missing", 4) == b""
