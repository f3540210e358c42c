"""utils/upload.py: exact lengths, nothing left behind on failure or cancellation, atomic publication."""
from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import Any, AsyncIterator
from unittest import mock

import aiohttp
from aiohttp import web
import pytest

from middlewared.utils import upload
from middlewared.utils.upload import BATCH, UploadError, body_chunks, stream_to_file


async def chunks(*parts: bytes, fail: BaseException | None = None, pause: float = 0) -> AsyncIterator[bytes]:
    for part in parts:
        if pause:
            await asyncio.sleep(pause)
        yield part
    if fail is not None:
        raise fail


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


async def test_exact_length_is_written_and_published(tmp_path: Path) -> None:
    seen: list[int] = []
    n = await stream_to_file(chunks(b"abc", b"defg"), str(tmp_path / "f.iso"), 7, seen.append, mode=0o640)
    assert n == 7 and (tmp_path / "f.iso").read_bytes() == b"abcdefg"
    assert seen == [7] and leftovers(tmp_path) == ["f.iso"]
    assert (tmp_path / "f.iso").stat().st_mode & 0o777 == 0o640


async def test_a_short_body_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(UploadError) as e:
        await stream_to_file(chunks(b"abc"), str(tmp_path / "f"), 10)
    assert e.value.errno == errno.EINVAL and "3 of 10" in str(e.value)
    assert leftovers(tmp_path) == []


async def test_a_long_body_is_refused(tmp_path: Path) -> None:
    with pytest.raises(UploadError):
        await stream_to_file(chunks(b"abc", b"def"), str(tmp_path / "f"), 4)
    assert leftovers(tmp_path) == []


async def test_a_broken_stream_leaves_nothing(tmp_path: Path) -> None:
    with pytest.raises(ConnectionResetError):
        await stream_to_file(chunks(b"abc", fail=ConnectionResetError()), str(tmp_path / "f"), None)
    assert leftovers(tmp_path) == []


async def test_cancellation_leaves_nothing(tmp_path: Path) -> None:
    task = asyncio.ensure_future(stream_to_file(chunks(*[b"x" * 1000] * 100, pause=0.01), str(tmp_path / "f")))
    await asyncio.sleep(0.1)
    assert len(leftovers(tmp_path)) == 1  # the temporary file, while the transfer runs
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert leftovers(tmp_path) == []


async def test_an_existing_target_is_kept(tmp_path: Path) -> None:
    (tmp_path / "f").write_bytes(b"old")
    with pytest.raises(UploadError) as e:
        await stream_to_file(chunks(b"new"), str(tmp_path / "f"), 3)
    assert e.value.errno == errno.EEXIST and (tmp_path / "f").read_bytes() == b"old"
    assert await stream_to_file(chunks(b"new"), str(tmp_path / "f"), 3, overwrite=True) == 3
    assert (tmp_path / "f").read_bytes() == b"new" and leftovers(tmp_path) == ["f"]


async def test_a_target_appearing_meanwhile_is_not_replaced(tmp_path: Path) -> None:
    async def racing() -> AsyncIterator[bytes]:
        yield b"mine"
        (tmp_path / "f").write_bytes(b"theirs")
    with pytest.raises(UploadError) as e:
        await stream_to_file(racing(), str(tmp_path / "f"), 4)
    assert e.value.errno == errno.EEXIST and (tmp_path / "f").read_bytes() == b"theirs"
    assert leftovers(tmp_path) == ["f"] and not any(p.startswith(".upload") for p in os.listdir(tmp_path))


async def test_pieces_are_written_in_batches_with_progress_per_batch(tmp_path: Path) -> None:
    piece = os.urandom(256 * 1024)
    count = 2 * BATCH // len(piece) + 3
    seen: list[int] = []
    n = await stream_to_file(chunks(*[piece] * count), str(tmp_path / "f"), count * len(piece), seen.append)
    assert n == count * len(piece) and (tmp_path / "f").read_bytes() == piece * count
    assert seen == [BATCH, 2 * BATCH, count * len(piece)]


def test_a_short_write_goes_on_where_it_stopped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = os.writev

    def short(fd: int, buffers: list[memoryview]) -> int:  # at most 5 bytes per call, across pieces
        out, left = [], 5
        for b in buffers:
            out.append(b[:left])
            left -= len(out[-1])
            if not left:
                break
        return real(fd, out)
    monkeypatch.setattr(os, "writev", short)
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        upload._write_all(fd, [b"abc", b"", b"defghij", b"k", b"lmnopqrstuvwxyz"])
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == b"abcdefghijklmnopqrstuvwxyz"


def test_more_pieces_than_one_writev_takes(tmp_path: Path) -> None:
    fd = os.open(tmp_path / "f", os.O_WRONLY | os.O_CREAT)
    try:
        upload._write_all(fd, [bytes([i % 256]) for i in range(3 * upload.IOV_MAX + 5)])
    finally:
        os.close(fd)
    assert (tmp_path / "f").read_bytes() == bytes(i % 256 for i in range(3 * upload.IOV_MAX + 5))


async def test_body_chunks_let_the_read_buffer_hold_two_batches() -> None:
    protocol = mock.Mock()  # the connection under the stream: pause and resume only
    content = aiohttp.StreamReader(protocol, 2**16, loop=asyncio.get_running_loop())
    content.feed_data(b"ab")
    content.feed_data(b"cd")
    content.feed_eof()
    assert [p async for p in body_chunks(content)] == [b"ab", b"cd"]  # as they came: no joined copy
    assert content.get_read_buffer_limits() == (BATCH, 2 * BATCH)


async def test_disk_writes_start_a_batch_behind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each batch written starts the disk writes of the one before it (sync_file_range WRITE)."""
    started: list[tuple[int, int, int]] = []
    def record(fd: int, offset: int, length: int, flags: int) -> int:
        started.append((offset, length, flags))
        return 0
    monkeypatch.setattr(upload, "_sync_file_range", record)
    pieces = [os.urandom(BATCH)] * 4
    assert await stream_to_file(chunks(*pieces), str(tmp_path / "f"), 4 * BATCH) == 4 * BATCH
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)
    write = upload.SYNC_FILE_RANGE_WRITE
    assert started == [(0, BATCH, write), (BATCH, BATCH, write), (2 * BATCH, BATCH, write)]


def test_sync_file_range_is_reachable(tmp_path: Path) -> None:
    assert upload._sync_file_range is not None  # Linux's C library has it
    with open(tmp_path / "f", "wb") as f:
        f.write(b"x" * 8192)
        assert upload._sync_file_range(f.fileno(), 0, 8192, upload.SYNC_FILE_RANGE_WRITE) == 0


# -- request_to_file: a real aiohttp server, a raw client socket -------------------------------------------------

async def upload_server(tmp_path: Path, on_request: Any = None) -> tuple[web.AppRunner, int, list[Any]]:
    """A server whose PUT /f stores its body with request_to_file; results collects each outcome."""
    results: list[Any] = []

    async def put(request: web.Request) -> web.Response:
        target = str(tmp_path / "store" / request.query.get("name", "f"))
        length = request.content_length if request.content_length is not None else int(request.query["length"])
        job = asyncio.ensure_future(upload.request_to_file(request, target, length))
        if on_request is not None:
            await on_request(job)
        try:
            results.append((await job, bool(request.get(upload.CONNECTION_TAKEN))))
        except (UploadError, asyncio.CancelledError, ConnectionError) as e:
            results.append(e)
        response = web.Response(text="done")
        if request.get(upload.CONNECTION_TAKEN):
            response.force_close()
        return response

    (tmp_path / "store").mkdir()
    app = web.Application()
    app.router.add_put("/f", put)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, port, results


async def send(port: int, head: bytes, body: bytes, close_after: bool = False) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(head + body)
    await writer.drain()
    if close_after:
        writer.close()
        return b""
    answer = await asyncio.wait_for(reader.read(), 30)  # to EOF: the server closes a spliced connection
    writer.close()
    return answer


def put_head(length: int, name: str = "f", close: bool = False) -> bytes:
    extra = "Connection: close\r\n" if close else ""
    return f"PUT /f?name={name} HTTP/1.1\r\nHost: x\r\nContent-Length: {length}\r\n{extra}\r\n".encode()


async def test_a_body_is_spliced_into_the_file(tmp_path: Path) -> None:
    runner, port, results = await upload_server(tmp_path)
    try:
        body = os.urandom(3 * BATCH + 12345)
        answer = await send(port, put_head(len(body)), body)
        assert answer.startswith(b"HTTP/1.1 200") and b"Connection: close" in answer and answer.endswith(b"done")
        assert results == [(len(body), True)]
        assert (tmp_path / "store" / "f").read_bytes() == body and leftovers(tmp_path / "store") == ["f"]
        # A body the server had read whole before the handler ran is written as it is: nothing to splice, and
        # the connection stays the client's to reuse.
        assert (await send(port, put_head(5, "g", close=True), b"hello")).endswith(b"done")
        assert results[1] == (5, False) and (tmp_path / "store" / "g").read_bytes() == b"hello"
    finally:
        await runner.cleanup()


async def test_a_spliced_body_cut_short_leaves_nothing(tmp_path: Path) -> None:
    runner, port, results = await upload_server(tmp_path)
    try:
        await send(port, put_head(4 * BATCH), os.urandom(BATCH), close_after=True)
        for _ in range(100):
            if results:
                break
            await asyncio.sleep(0.05)
        assert isinstance(results[0], UploadError) and results[0].errno == errno.EINVAL
        assert f"of {4 * BATCH} bytes" in str(results[0])
        assert leftovers(tmp_path / "store") == []
    finally:
        await runner.cleanup()


async def test_a_spliced_upload_cancelled_leaves_nothing(tmp_path: Path) -> None:
    async def cancel_soon(job: asyncio.Future[int]) -> None:
        await asyncio.sleep(0.3)
        assert len(leftovers(tmp_path / "store")) == 1  # the temporary file, while the client stalls
        job.cancel()

    runner, port, results = await upload_server(tmp_path, cancel_soon)
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(put_head(2 * BATCH) + b"x" * 1000)  # then nothing more
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 30)).endswith(b"done")
        writer.close()
        assert isinstance(results[0], asyncio.CancelledError) and leftovers(tmp_path / "store") == []
    finally:
        await runner.cleanup()


async def test_a_chunked_body_is_streamed_instead(tmp_path: Path) -> None:
    runner, port, results = await upload_server(tmp_path)
    try:
        head = b"PUT /f?length=5 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
        assert (await send(port, head, b"3\r\nhel\r\n2\r\nlo\r\n0\r\n\r\n")).endswith(b"done")
        assert results == [(5, False)] and (tmp_path / "store" / "f").read_bytes() == b"hello"
    finally:
        await runner.cleanup()


async def test_stalled_uploads_hold_no_thread(tmp_path: Path) -> None:
    """Clients that send nothing more hold no worker thread: more of them than the default pool has threads."""
    runner, port, results = await upload_server(tmp_path)
    try:
        clients = []
        for i in range(12):
            reader, writer = await asyncio.open_connection("127.0.0.1", port)
            writer.write(put_head(2 * BATCH, f"s{i}") + b"x" * 1000)
            await writer.drain()
            clients.append(writer)
        await asyncio.sleep(0.5)
        assert await asyncio.wait_for(asyncio.to_thread(lambda: 42), 5) == 42
        for writer in clients:
            writer.close()
        for _ in range(100):
            if len(results) == 12:
                break
            await asyncio.sleep(0.05)
        assert len(results) == 12 and all(isinstance(r, UploadError) for r in results)
        assert leftovers(tmp_path / "store") == []
    finally:
        await runner.cleanup()


async def test_a_body_is_spliced_from_a_unix_socket(tmp_path: Path) -> None:
    runner, _, results = await upload_server(tmp_path)
    try:
        path = str(tmp_path / "s.sock")
        await web.UnixSite(runner, path).start()
        body = os.urandom(2 * BATCH + 7)
        reader, writer = await asyncio.open_unix_connection(path)
        writer.write(put_head(len(body)) + body)
        await writer.drain()
        assert (await asyncio.wait_for(reader.read(), 30)).endswith(b"done")
        writer.close()
        assert results == [(len(body), True)] and (tmp_path / "store" / "f").read_bytes() == body
    finally:
        await runner.cleanup()
