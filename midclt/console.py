"""midclt console: a VM's serial console in this terminal, like ``virsh console`` (raw mode; Ctrl-] leaves).

The daemon hands out a WebSocket URI (vm.get_console_web_uri) carrying raw bytes both ways; keystrokes go
out as binary frames and output is written to stdout as it comes.
"""
from __future__ import annotations

import asyncio
import contextlib
import os
import sys
import termios
import tty
from typing import Iterator
from urllib.parse import urlsplit

import aiohttp

from midclt.protocol import parse_uri

ESCAPE = b"\x1d"  # Ctrl-], as virsh console


def console_url(web_uri: str, client_uri: str | None) -> tuple[str, str | None]:
    """Where to open the console: over the unix socket the client used (its path and ticket kept), else the
    URI as the daemon gave it."""
    _, socket_path = parse_uri(client_uri)
    if socket_path is None:
        return web_uri, None
    parts = urlsplit(web_uri)
    return f"ws://localhost{parts.path}?{parts.query}", socket_path


@contextlib.contextmanager
def raw_terminal(fd: int) -> Iterator[None]:
    """The terminal in raw mode (keys such as Ctrl-C go to the guest), restored afterwards."""
    if not os.isatty(fd):
        yield
        return
    saved = termios.tcgetattr(fd)
    try:
        tty.setraw(fd, termios.TCSANOW)
        yield
    finally:
        termios.tcsetattr(fd, termios.TCSADRAIN, saved)


async def relay(ws: aiohttp.ClientWebSocketResponse, stdin: int, stdout: int) -> str:
    """Copy stdin to the console and the console to stdout; return why it ended."""
    loop = asyncio.get_running_loop()
    keys: asyncio.Queue[bytes] = asyncio.Queue()
    try:
        loop.add_reader(stdin, lambda: keys.put_nowait(os.read(stdin, 4096)))
        polled = True
    except PermissionError:
        # A regular file or /dev/null cannot be polled (a script, a job without input): read it directly.
        polled = False

    async def typing() -> str:
        while True:
            data = await keys.get() if polled else await loop.run_in_executor(None, os.read, stdin, 4096)
            if not data:
                return "end of input"
            before, escape, _ = data.partition(ESCAPE)
            if before:
                await ws.send_bytes(before)
            if escape:
                return "left"

    async def output() -> str:
        async for msg in ws:
            if msg.type == aiohttp.WSMsgType.BINARY:
                os.write(stdout, msg.data)
            elif msg.type == aiohttp.WSMsgType.TEXT:
                os.write(stdout, msg.data.encode())
        return "the daemon closed the console"

    tasks = [asyncio.create_task(typing()), asyncio.create_task(output())]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        return done.pop().result()
    finally:
        if polled:
            loop.remove_reader(stdin)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def attach(web_uri: str, client_uri: str | None, vm_id: int) -> int:
    """Connect to the console and relay until Ctrl-], end of input or the daemon closing it."""
    url, socket_path = console_url(web_uri, client_uri)
    connector = aiohttp.UnixConnector(path=socket_path) if socket_path else None
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.ws_connect(url, heartbeat=30) as ws:
            sys.stderr.write(f"Connected to the serial console of VM {vm_id}\r\nEscape character is ^]\r\n")
            sys.stderr.flush()
            stdin, stdout = sys.stdin.fileno(), sys.stdout.fileno()
            with raw_terminal(stdin):
                why = await relay(ws, stdin, stdout)
    sys.stderr.write(f"\r\nConsole of VM {vm_id} closed: {why}\r\n")
    return 0


def run(web_uri: str, client_uri: str | None, vm_id: int) -> int:
    """midclt console's body, once the URI is known."""
    return asyncio.run(attach(web_uri, client_uri, vm_id))
