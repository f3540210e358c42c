"""Streaming an uploaded body to a file: exactly the announced length, nothing left behind on failure.

The bytes go to a temporary file beside the target (same filesystem, so the final rename is atomic) and
the target appears only once every byte has arrived and reached the disk. A body cut short, an abort
(task cancelled), a full disk or a target that appeared meanwhile removes the temporary file.

Throughput: the socket hands over at most 256 KiB per read, and a hop to a writing thread costs far more
than a small write, so pieces are gathered into batches of BATCH bytes and each batch is one writev() in a
thread, without joining them into one copy first. While a batch is written the event loop keeps reading:
body_chunks() lets the request's buffer grow to two batches instead of aiohttp's 128 KiB (past which it
stops reading the socket). The disk writes start a batch behind the transfer (_write_batch) and the file is
synced once, at the end (as `cp` followed by `sync`).
"""
from __future__ import annotations

import asyncio
import errno
import os
import tempfile
from typing import AsyncIterable, AsyncIterator, Callable, Sequence

from aiohttp import StreamReader

# Bytes a reader asks for at once (multipart parts, downloads).
CHUNK = 1 << 20
# Bytes gathered before one write to disk: each batch costs one thread hop and one system call.
BATCH = 4 << 20
IOV_MAX = 1024

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
        async for batch in _batches(chunks):
            offset = written
            written += sum(len(piece) for piece in batch)
            if length is not None and written > length:
                raise UploadError(f"the body is longer than its announced {length} bytes", errno.EINVAL)
            await _in_thread(_write_batch, fd, batch, offset)
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


async def body_chunks(content: StreamReader) -> AsyncIterator[bytes]:
    """A request body's pieces as they arrive, the read buffer raised so the socket is read during writes."""
    content.set_read_chunk_size(BATCH)
    async for data, _ in content.iter_chunks():
        if data:
            yield data


async def _batches(chunks: AsyncIterable[bytes]) -> AsyncIterator[list[bytes]]:
    """The pieces in lists of at least BATCH bytes (the last one shorter)."""
    batch: list[bytes] = []
    held = 0
    async for chunk in chunks:
        batch.append(chunk)
        held += len(chunk)
        if held >= BATCH:
            yield batch
            batch, held = [], 0
    if batch:
        yield batch


async def _in_thread(fn: Callable[..., None], *args: object) -> None:
    """Run fn in a thread; a cancellation waits for it to return, so the fd is never closed under it."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def _write_batch(fd: int, pieces: Sequence[bytes], offset: int) -> None:
    """Append a batch that starts at offset, then advise the kernel about the two batches before it."""
    _write_all(fd, pieces)
    start = max(0, offset - 2 * BATCH)
    if offset > start:
        # DONTNEED starts the disk writes of the range's dirty pages and drops its pages already written: the
        # batch just before this one goes to disk while the next arrives, and the one before that, on disk by
        # now, leaves the page cache. Otherwise the whole file waits, dirty, for the final fsync (the disk idle
        # during the transfer, then the transfer waiting for the disk) and a large upload pushes the guests'
        # and the host's cached pages out. Advice only: the fsync at the end is what makes the file durable.
        os.posix_fadvise(fd, start, offset - start, os.POSIX_FADV_DONTNEED)


def _write_all(fd: int, pieces: Sequence[bytes]) -> None:
    views = [memoryview(piece) for piece in pieces if piece]
    first = 0
    while first < len(views):
        done = os.writev(fd, views[first:first + IOV_MAX])
        # A short write (a signal, a full disk about to fail) ends inside some piece: go on from there.
        while done and done >= len(views[first]):
            done -= len(views[first])
            first += 1
        if done:
            views[first] = views[first][done:]


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
