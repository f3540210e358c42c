"""midclt console in a real pseudo-terminal: raw mode, the console's bytes, Ctrl-] to leave."""
from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import termios
import time
from typing import Any

import pytest

from midclt.console import console_url
from tests.support import Daemon

pytestmark = pytest.mark.timeout(120)


def read_until(fd: int, wanted: bytes, timeout: float = 30) -> bytes:
    data = b""
    deadline = time.monotonic() + timeout
    while wanted not in data:
        remaining = deadline - time.monotonic()
        assert remaining > 0, data
        if select.select([fd], [], [], remaining)[0]:
            try:
                chunk = os.read(fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            data += chunk
    return data


def test_console_url() -> None:
    uri = "ws://127.0.0.1:8016/vm/serial/3?auth_token=abc"
    assert console_url(uri, None) == ("ws://localhost/vm/serial/3?auth_token=abc", "/run/middleware/middlewared.sock")
    assert console_url(uri, "ws+unix:///tmp/x.sock") == ("ws://localhost/vm/serial/3?auth_token=abc", "/tmp/x.sock")
    assert console_url(uri, "ws://10.0.0.1:8016/api/current") == (uri, None)


def test_midclt_console_in_a_terminal(daemon: Daemon, vm: dict[str, Any]) -> None:
    master, slave = pty.openpty()
    before = termios.tcgetattr(slave)
    proc = subprocess.Popen([sys.executable, "-m", "midclt", "-u", f"ws+unix://{daemon.socket}", "console",
                             str(vm["id"])], stdin=slave, stdout=slave, stderr=slave, close_fds=True)
    try:
        seen = read_until(master, b"not running")
        assert b"Escape character is ^]" in seen and b"you have the keyboard" in seen
        assert not termios.tcgetattr(slave)[3] & termios.ECHO  # raw: the guest echoes, not the terminal
        os.write(master, b"x")
        assert b"the VM is not running" in read_until(master, b"the VM is not running]")
        os.write(master, b"\x1d")
        assert proc.wait(20) == 0
        assert b"closed: left" in read_until(master, b"left")
        assert termios.tcgetattr(slave) == before
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)
        os.close(slave)


def test_midclt_console_of_a_missing_vm(daemon: Daemon) -> None:
    proc = subprocess.run([sys.executable, "-m", "midclt", "-u", f"ws+unix://{daemon.socket}", "console", "999999"],
                          capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=60)
    assert proc.returncode == 1 and "does not exist" in proc.stderr
