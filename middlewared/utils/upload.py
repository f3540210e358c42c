"""Streaming an uploaded body to a file: exactly the announced length, nothing left behind on failure.

The bytes go to a temporary file beside the target (same filesystem, so the final rename is atomic) and
the target appears only once every byte has arrived and reached the disk. A body cut short, an abort
(task cancelled), a full disk or a target that appeared meanwhile removes the temporary file.
"""
from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from typing import AsyncIterable, Callable

from aiohttp import web

CHUNK = 1 << 20

Progress = Callable[[int], None]


class UploadError(Exception):
    """An upload that did not produce its file; errno says why (EINVAL short or long body, EEXIST, ...)."""

    def __init__(self, message: str, errno_: int) -> None:
        super().__init__(message)
        self.errno = errno_


async def stream_to_file(chunks: AsyncIterable[bytes], target: str, length: int | None = None,
                         progress: Progress | None = None, overwrite: bool = False, mode: int = 0o644) -> int:
    """Write chunks to target through a temporary file in its directory; return the bytes written.

    With a length, exactly that many bytes must arrive (fewer or more is an UploadError). Without
    overwrite an existing target is refused (EEXIST), before and after the transfer.
    """
    directory = os.path.dirname(os.path.abspath(target))
    if not overwrite and os.path.lexists(target):
        raise UploadError(f"{target} already exists", errno.EEXIST)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=directory)
    written = 0
    open_fd: int | None = fd
    try:
        async for chunk in chunks:
            written += len(chunk)
            if length is not None and written > length:
                raise UploadError(f"the body is longer than its announced {length} bytes", errno.EINVAL)
            await _in_thread(_write_all, fd, chunk)
            if progress is not None:
                progress(written)
        if length is not None and written != length:
            raise UploadError(f"the body ended after {written} of {length} bytes", errno.EINVAL)
        await _in_thread(_sync, fd, mode)
        open_fd = None
        os.close(fd)
        await asyncio.to_thread(_publish, tmp, target, overwrite)
    except BaseException:
        _discard(open_fd, tmp)
        raise
    return written


async def request_to_file(request: web.BaseRequest, target: str, progress: Progress | None = None,
                          overwrite: bool = False) -> int:
    """Stream a whole request body (Content-Length required, 411 without) to target."""
    length = request.content_length
    if length is None:
        raise web.HTTPLengthRequired(text="A Content-Length header is required")
    return await stream_to_file(request.content.iter_chunked(CHUNK), target, length, progress, overwrite)


async def _in_thread(fn: Callable[..., None], *args: object) -> None:
    """Run fn in a thread; a cancellation waits for it to return, so the fd is never closed under it."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _sync(fd: int, mode: int) -> None:
    os.fchmod(fd, mode)
    os.fsync(fd)


def _publish(tmp: str, target: str, overwrite: bool) -> None:
    if overwrite:
        os.replace(tmp, target)
        return
    try:
        # link() refuses an existing name atomically, where rename() would replace it.
        os.link(tmp, target)
    except FileExistsError:
        raise UploadError(f"{target} already exists", errno.EEXIST) from None
    os.unlink(tmp)


def _discard(fd: int | None, tmp: str) -> None:
    if fd is not None:
        os.close(fd)
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass
