"""midclt console's relay: input that cannot be polled (a file, /dev/null) still works, and its end ends it."""
from __future__ import annotations

import asyncio
import os
from typing import Any, AsyncIterator, cast

import aiohttp

from midclt.console import relay


class QuietConsole:
    """A console WebSocket that sends nothing and records what it is sent."""

    def __init__(self) -> None:
        self.sent: list[bytes] = []

    async def send_bytes(self, data: bytes) -> None:
        self.sent.append(data)

    def __aiter__(self) -> AsyncIterator[Any]:
        return self

    async def __anext__(self) -> Any:
        await asyncio.sleep(3600)
        raise StopAsyncIteration


async def test_input_from_a_file_is_sent_and_its_end_leaves(tmp_path: Any) -> None:
    keys = tmp_path / "keys"
    keys.write_bytes(b"echo hi\r")
    console = QuietConsole()
    stdin = os.open(keys, os.O_RDONLY)
    stdout = os.open(os.devnull, os.O_WRONLY)
    try:
        why = await asyncio.wait_for(relay(cast(aiohttp.ClientWebSocketResponse, console), stdin, stdout), 10)
    finally:
        os.close(stdin)
        os.close(stdout)
    assert why == "end of input"
    assert b"".join(console.sent) == b"echo hi\r"
