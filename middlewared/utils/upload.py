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

A request body of known length on a plain TCP or unix connection takes a shorter way (request_to_file): the
bytes the server has read so far are written, then the rest is spliced from the socket into the file by the
kernel (splice(2) through a pipe), never copied into the process. The connection is then the upload's alone
and closes after the response.
"""
from __future__ import annotations

import asyncio
import ctypes
import errno
import fcntl
import os
import tempfile
from typing import Any, AsyncIterable, AsyncIterator, Awaitable, Callable, Sequence, TypeVar

from aiohttp import StreamReader, web

# Bytes a reader asks for at once (multipart parts, downloads).
CHUNK = 1 << 20
# Bytes gathered before one write to disk: each batch costs one thread hop and one system call.
BATCH = 4 << 20
IOV_MAX = 1024
# The pipe a spliced body passes through; each splice moves at most this much.
PIPE_SIZE = 1 << 20
SYNC_FILE_RANGE_WRITE = 2
# A request whose connection request_to_file took over: its response must close the connection.
CONNECTION_TAKEN = web.RequestKey("connection_taken", bool)

Progress = Callable[[int], None]
T = TypeVar("T")


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
    async def fill(fd: int) -> int:
        written = 0
        async for batch in _batches(chunks):
            offset = written
            written += sum(len(piece) for piece in batch)
            if length is not None and written > length:
                raise UploadError(f"the body is longer than its announced {length} bytes", errno.EINVAL)
            await _in_thread(_write_batch, fd, batch, offset)
            if progress is not None:
                progress(written)
        return written
    return await _through_temporary(target, length, overwrite, mode, fill)


async def request_to_file(request: web.Request, target: str, length: int, overwrite: bool = False,
                          mode: int = 0o644) -> int:
    """A request body of exactly length bytes into target, as stream_to_file; spliced where the connection allows.

    A TLS connection (the bytes must be decrypted here), a system without splice(2) or a body already read whole
    goes through stream_to_file. A spliced request's connection closes after its response (request[CONNECTION_TAKEN]).
    """
    sock = _plain_socket(request)
    if sock is None or request.content.is_eof():  # no splice, or the whole body is here already
        return await stream_to_file(body_chunks(request.content), target, length, overwrite=overwrite, mode=mode)

    async def fill(fd: int) -> int:
        head = _take_connection(request)
        if len(head) > length:
            raise UploadError(f"the body is longer than its announced {length} bytes", errno.EINVAL)
        await _in_thread(_write_all, fd, [head])
        return await _splice_body(sock, fd, len(head), length)
    return await _through_temporary(target, length, overwrite, mode, fill)


async def _through_temporary(target: str, length: int | None, overwrite: bool, mode: int,
                             fill: Callable[[int], Awaitable[int]]) -> int:
    """Fill a temporary file beside target, check its length, sync it and publish it as target."""
    directory = os.path.dirname(os.path.abspath(target))
    if not overwrite and os.path.lexists(target):
        raise UploadError(f"{target} already exists", errno.EEXIST)
    fd, tmp = tempfile.mkstemp(prefix=".upload-", suffix=".part", dir=directory)
    open_fd: int | None = fd
    try:
        written = await fill(fd)
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


async def _in_thread(fn: Callable[..., T], *args: object) -> T:
    """Run fn in a thread; a cancellation waits for it to return, so the fd is never closed under it."""
    future = asyncio.ensure_future(asyncio.to_thread(fn, *args))
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        await asyncio.wait([future])
        raise


def _plain_socket(request: web.Request) -> int | None:
    """The file descriptor of the request's connection when its body can be spliced from it."""
    transport = request.transport
    if (not hasattr(os, "splice") or transport is None or transport.is_closing()
            or transport.get_extra_info("sslcontext") is not None or request.content_length is None):
        return None
    sock = transport.get_extra_info("socket")
    return None if sock is None else int(sock.fileno())


def _take_connection(request: web.Request) -> bytes:
    """Stop the server reading the connection; return the body bytes it had read already.

    Done without yielding to the event loop: nothing is read between the last buffered byte taken here and the
    pause, so the rest of the body is still in the socket, in order.
    """
    content = request.content
    head = bytearray()
    while data := content.read_nowait():
        head += data
    # The body counts as read (or the server would wait for the rest before closing); the server must not parse
    # on (the body's end never reaches its parser) nor keep the connection for a next request. The transport is
    # paused last: ending the stream resumes it.
    content.feed_eof()
    request.protocol.close()
    request.transport.pause_reading()  # type: ignore[union-attr]  # checked by _plain_socket
    request[CONNECTION_TAKEN] = True
    return bytes(head)


async def _splice_body(sock: int, fd: int, start: int, length: int) -> int:
    """Move the body's bytes from start to length from the socket into the file; return the bytes in the file.

    The event loop waits for the socket to be readable; a thread then moves what has arrived (up to BATCH bytes),
    so a slow client holds no thread while it sends nothing.
    """
    loop = asyncio.get_running_loop()
    # The loop refuses to watch a descriptor that belongs to a transport: it watches a duplicate.
    watched = os.dup(sock)
    r, w = os.pipe()
    try:
        try:
            fcntl.fcntl(w, fcntl.F_SETPIPE_SZ, PIPE_SIZE)
        except OSError:
            pass  # the default pipe (64 KiB) only means more system calls
        pipe_size = fcntl.fcntl(w, fcntl.F_GETPIPE_SZ)
        done = synced = start
        while done < length:
            await _readable(loop, watched)
            moved = await _in_thread(_splice_some, sock, r, w, pipe_size, fd, done, min(BATCH, length - done))
            if moved is None:  # the client closed its side
                break
            done += moved
            if done - synced >= BATCH:
                # In the thread too: sync_file_range can wait for room in a busy disk's queue.
                await _in_thread(_start_writeback, fd, synced, done - synced)
                synced = done
        return done
    finally:
        for each in (watched, r, w):
            os.close(each)


async def _readable(loop: asyncio.AbstractEventLoop, fd: int) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def wake() -> None:
        if not ready.done():
            ready.set_result(None)
    loop.add_reader(fd, wake)
    try:
        await ready
    finally:
        loop.remove_reader(fd)


def _splice_some(sock: int, r: int, w: int, pipe_size: int, fd: int, offset: int, limit: int) -> int | None:
    """Splice what the socket holds, up to limit bytes, into the file at offset; None when the peer has closed."""
    done = 0
    while done < limit:
        try:
            moved = os.splice(sock, w, min(pipe_size, limit - done), flags=os.SPLICE_F_MOVE | os.SPLICE_F_NONBLOCK)
        except BlockingIOError:
            break  # all that has arrived is in the file: back to waiting on the loop
        if moved == 0:
            return done or None
        while moved:
            n = os.splice(r, fd, moved, offset_dst=offset + done, flags=os.SPLICE_F_MOVE)
            done += n
            moved -= n
    return done


def _write_batch(fd: int, pieces: Sequence[bytes], offset: int) -> None:
    """Append a batch that starts at offset, then start the disk writes of the batch before it."""
    _write_all(fd, pieces)
    if offset >= BATCH:
        _start_writeback(fd, offset - BATCH, BATCH)


def _start_writeback(fd: int, offset: int, length: int) -> None:
    """Ask the kernel to start writing a range's dirty pages to disk, without waiting for them.

    Otherwise the whole file waits, dirty, for the final fsync: the disk idle during the transfer, then the
    transfer waiting for the disk. The pages stay cached, as cp leaves them (dropping them as well, with fadvise
    DONTNEED, made later batches' page allocations slower on hosts that hand freed memory back to their
    hypervisor). Advice only: the fsync at the end is what makes the file durable.
    """
    if _sync_file_range is not None:
        _sync_file_range(fd, offset, length, SYNC_FILE_RANGE_WRITE)


def _libc_sync_file_range() -> Any:
    """sync_file_range(2) from the C library (Linux; the os module does not wrap it), or None."""
    try:
        fn = ctypes.CDLL(None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_sync_file_range = _libc_sync_file_range()


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
