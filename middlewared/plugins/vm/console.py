"""vm.console_log: what a guest printed on its serial console, from the log file virtlogd keeps for it."""
from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from middlewared.plugins.vm.model import VMRecord

if TYPE_CHECKING:
    from middlewared.plugins.vm.records import VMRecords

CHUNK = 65536
CONSOLE_LOG_OPTIONS: dict[str, Any] = {
    "title": "options", "type": "object", "default": {}, "additionalProperties": False,
    "description": "Which part of the console log to return.",
    "properties": {"tail": {"type": ["integer", "null"], "minimum": 0, "default": None,
                            "description": "Return only the last this many lines; null returns the whole log."}},
}
CONSOLE_LOG_RESULT: dict[str, Any] = {
    "title": "result", "type": "string",
    "description": "The serial console output of every boot so far, as printed (firmware escape sequences and "
                   "\\r\\n line ends included; bytes that are not UTF-8 replaced); empty if the VM never ran.",
}


def last_lines(data: bytes, count: int) -> bytes:
    """The last `count` lines of data; a final newline ends the last line rather than starting another."""
    if count == 0:
        return b""
    cut = len(data) - 1 if data.endswith(b"\n") else len(data)
    for _ in range(count):
        cut = data.rfind(b"\n", 0, cut)
        if cut < 0:
            return data
    return data[cut + 1:]


def read_log(path: str, tail: int | None) -> bytes:
    """A log file's content or its last `tail` lines, read from the end; empty when it does not exist."""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return b""
    with f:
        if tail is None:
            # Bounded: virtlogd rotates the file at its max_size (2 MiB unless configured otherwise).
            return f.read()
        size = f.seek(0, 2)
        start, data = size, b""
        # Read backwards until the block holds one newline more than the lines wanted (or the whole file).
        while start > 0 and data.count(b"\n") <= tail:
            start = max(0, start - CHUNK)
            f.seek(start)
            data = f.read(size - start)
        return last_lines(data, tail)


async def console_log(vms: "VMRecords", id_: int, options: dict[str, Any]) -> str:
    """What the VM's guest printed on its serial console (firmware, boot loader, kernel, getty), across
    boots: every domain's serial port is logged to a file by libvirt's virtlogd."""
    path = vms.domain_context(VMRecord.from_row(await vms.get_instance(id_))).serial_log_path
    if path is None:
        return ""
    data = await asyncio.to_thread(read_log, path, options["tail"])
    return data.decode("utf-8", errors="replace")
