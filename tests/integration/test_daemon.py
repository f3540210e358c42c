"""The daemon process: running contract, clean shutdown, one-line errors for bad config and busy sockets."""
from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support import ROOT, free_port, start_daemon, stop_daemon, write_config


def run_daemon(*args: str, env: dict[str, str] | None = None, timeout: float = 20) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "middlewared", *args], capture_output=True, text=True,
                          cwd=str(ROOT), timeout=timeout, env=env)


def test_bad_config_is_one_line_and_exit_1(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[server]\nport = 'six thousand'\n")
    result = run_daemon("--config", str(bad))
    assert result.returncode == 1
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "server.port must be of type int" in lines[0]


def test_missing_config_file(tmp_path: Path) -> None:
    result = run_daemon("--config", str(tmp_path / "nope.toml"))
    assert result.returncode == 1 and "cannot read" in result.stderr


def test_env_var_selects_config(tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[nope]\n")
    result = run_daemon(env={**os.environ, "MIDDLEWARED_CONFIG": str(bad)})
    assert result.returncode == 1 and "unknown section [nope]" in result.stderr


def test_port_in_use(tmp_path: Path, libvirtd: str) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(tmp_path, port, "unused")
        result = run_daemon("--config", str(config), timeout=60)
    assert result.returncode == 1
    assert f"127.0.0.1:{port} is already in use" in result.stderr.strip().splitlines()[-1]


def test_unix_socket_in_use_and_sigterm(tmp_path: Path, libvirtd: str) -> None:
    first = start_daemon(tmp_path)
    try:
        config = write_config(first.tmp, free_port(), first.pool)
        result = run_daemon("--config", str(config), timeout=60)
        assert result.returncode == 1
        assert "is already in use by another process" in result.stderr.strip().splitlines()[-1]
    finally:
        first.process.send_signal(signal.SIGTERM)
        assert first.process.wait(30) == 0
    # A clean stop removes the socket, and a stale socket file does not stop the next start.
    assert not os.path.exists(first.socket)
    Path(first.socket).touch()
    again = start_daemon(first.tmp, pool=first.pool)
    assert stop_daemon(again) == 0


def test_sigint_stops_cleanly(tmp_path: Path, libvirtd: str) -> None:
    daemon = start_daemon(tmp_path)
    daemon.process.send_signal(signal.SIGINT)
    assert daemon.process.wait(30) == 0
    assert "shutting down" in daemon.log()
    assert "Traceback" not in daemon.log()


def test_help() -> None:
    result = run_daemon("--help")
    assert result.returncode == 0 and "--config" in result.stdout and "--debug" in result.stdout


@pytest.mark.parametrize("script", ["middlewared", "midclt"])
def test_console_scripts_installed(script: str) -> None:
    assert (Path(sys.executable).parent / script).exists()
