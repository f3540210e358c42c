"""The output pipe of a job: bytes written by the job, read once by a /_download request."""
from __future__ import annotations

import asyncio


class OutputPipe:
    """A bounded in-memory byte pipe with back-pressure; closing it marks end of file."""

    def __init__(self, max_chunks: int = 64) -> None:
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(max_chunks)
        self.closed = False
        self.reader_attached = asyncio.Event()

    async def write(self, data: bytes) -> None:
        """Write bytes, waiting while the reader is behind."""
        if self.closed:
            raise BrokenPipeError("output pipe is closed")
        if data:
            await self._queue.put(bytes(data))

    async def close(self) -> None:
        """Signal end of file to the reader."""
        if not self.closed:
            self.closed = True
            await self._queue.put(None)

    def close_nowait(self) -> None:
        """Close without waiting (job teardown); the reader sees EOF after what is queued."""
        if not self.closed:
            self.closed = True
            try:
                self._queue.put_nowait(None)
            except asyncio.QueueFull:
                pass

    async def read(self) -> bytes | None:
        """The next chunk, or None at end of file."""
        self.reader_attached.set()
        if self.closed and self._queue.empty():
            return None
        return await self._queue.get()
