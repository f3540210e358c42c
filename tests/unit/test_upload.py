"""utils/upload.py: exact lengths, nothing left behind on failure or cancellation, atomic publication."""
from __future__ import annotations

import asyncio
import errno
import os
from pathlib import Path
from typing import AsyncIterator
from unittest import mock

import aiohttp
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
    monkeypatch.setattr(upload.os, "writev", short)
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
    """Each batch written advises the kernel (start writing, drop what is written) about the two before it."""
    advised: list[tuple[int, int, int]] = []
    monkeypatch.setattr(upload.os, "posix_fadvise", lambda fd, offset, length, advice: advised.append(
        (offset, length, advice)))
    pieces = [os.urandom(BATCH)] * 4
    assert await stream_to_file(chunks(*pieces), str(tmp_path / "f"), 4 * BATCH) == 4 * BATCH
    assert (tmp_path / "f").read_bytes() == b"".join(pieces)
    drop = os.POSIX_FADV_DONTNEED
    assert advised == [(0, BATCH, drop), (0, 2 * BATCH, drop), (BATCH, 2 * BATCH, drop)]
