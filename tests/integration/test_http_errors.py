"""A malformed HTTP request is the client's mistake: a 400, and one line in the log, not a traceback."""
from __future__ import annotations

import asyncio

from tests.support import Daemon


async def test_malformed_request_logs_no_traceback(daemon: Daemon) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", daemon.port)
    writer.write(b"GET /api/versions HTTP/1.1\r\nHost: x\r\nX-Bad: a\x00b\r\n\r\n")
    await writer.drain()
    status = await asyncio.wait_for(reader.readline(), 10)
    writer.close()
    assert status.split()[1] == b"400", status
    for _ in range(50):
        if "Error handling request" in daemon.log():
            break
        await asyncio.sleep(0.1)
    log = daemon.log()
    line = next(line for line in log.splitlines() if "Error handling request" in line)
    assert " INFO " in line, line
    assert "Traceback" not in log[log.index(line):], log[log.index(line):][:2000]
