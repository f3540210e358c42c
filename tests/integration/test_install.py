"""`make install` / `make uninstall` for real, as root: the unit verifies, the installed daemon answers a ping.

It writes to /opt/middlewared, /usr/local/bin, /etc/middlewared and /etc/systemd/system, and removes what it
installed afterwards. It refuses to run over an installation it did not make (skip), so it is safe on a developer
machine; deselect it with -m "not install".
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import ROOT, cleanup_libvirt, free_port, unique, write_config

pytestmark = [pytest.mark.install, pytest.mark.slow, pytest.mark.timeout(1200)]

LIBDIR = Path("/opt/middlewared")
BINDIR = Path("/usr/local/bin")
CONFIG = Path("/etc/middlewared/middlewared.toml")
UNIT = Path("/etc/systemd/system/middlewared.service")
INSTALLED = (LIBDIR, BINDIR / "middlewared", BINDIR / "midclt", UNIT)


def make(target: str) -> str:
    proc = subprocess.run(["make", "-C", str(ROOT), "--no-print-directory", target], capture_output=True, text=True,
                          timeout=900)
    assert proc.returncode == 0, f"make {target}: {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc.stdout


@pytest.fixture(scope="module")
def installed() -> Iterator[None]:
    """The project installed for the system; uninstalled (and the default config removed) afterwards."""
    if os.geteuid() != 0:
        pytest.skip("installs for the system: needs root")
    present = [str(path) for path in (*INSTALLED, CONFIG) if path.exists() or path.is_symlink()]
    if present:
        pytest.skip(f"an installation is already here ({', '.join(present)}): not touching it")
    try:
        make("install")
        yield
    finally:
        make("uninstall")
        CONFIG.unlink(missing_ok=True)  # a test changed it: uninstall keeps a changed config
        if CONFIG.parent.exists() and not any(CONFIG.parent.iterdir()):
            CONFIG.parent.rmdir()


def test_install_is_complete_and_idempotent(installed: None) -> None:
    for script in ("middlewared", "midclt"):
        link = BINDIR / script
        assert link.resolve().is_relative_to(LIBDIR) and os.access(link, os.X_OK)
    assert CONFIG.read_text() == (ROOT / "etc" / "middlewared.toml").read_text()
    assert "ExecStart=/usr/local/bin/middlewared --config /etc/middlewared/middlewared.toml" in UNIT.read_text()
    # A second install changes nothing and never overwrites the administrator's config.
    CONFIG.write_text(CONFIG.read_text() + "\n# changed by the administrator\n")
    make("install")
    assert CONFIG.read_text().endswith("# changed by the administrator\n")
    assert (BINDIR / "midclt").resolve().is_relative_to(LIBDIR)


def test_unit_verifies(installed: None) -> None:
    # systemd-analyze checks the unit offline (no running systemd needed), ExecStart's binary included.
    proc = subprocess.run(["systemd-analyze", "verify", str(UNIT)], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "middlewared" not in proc.stderr, proc.stderr  # no warning about our unit


def test_installed_daemon_answers_a_ping(installed: None, libvirtd: str) -> None:
    with tempfile.TemporaryDirectory(prefix="mwinstall-") as tmp:
        pool = unique("mwinstall")
        port = free_port()
        config = write_config(Path(tmp), port, pool)
        log = Path(tmp) / "daemon.log"
        # Away from the source tree, so nothing but the installed package can be imported.
        with open(log, "wb") as out:
            daemon = subprocess.Popen([str(BINDIR / "middlewared"), "--config", str(config)], cwd=tmp,
                                      stdout=out, stderr=subprocess.STDOUT)
        try:
            ping = subprocess.run([str(BINDIR / "midclt"), "-u", f"ws+unix://{tmp}/middlewared.sock", "-t", "60",
                                   "waitready"], capture_output=True, text=True, timeout=120, cwd=tmp)
            assert ping.returncode == 0, f"{ping.stderr}\n{log.read_text()}"
            ping = subprocess.run([str(BINDIR / "midclt"), "-u", f"ws+unix://{tmp}/middlewared.sock", "ping"],
                                  capture_output=True, text=True, timeout=60, cwd=tmp)
            assert ping.stdout == "pong\n", ping.stderr
            # The web UI's files (npm packages included) are part of the installed package.
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/ui/", timeout=60) as answer:
                assert answer.status == 200 and b"<html" in answer.read().lower()
        finally:
            daemon.terminate()
            daemon.wait(60)
            cleanup_libvirt(pool, Path(tmp) / "db" / "middlewared.db")


def test_uninstall_removes_it_all(installed: None) -> None:
    CONFIG.write_text(CONFIG.read_text() + "\n# changed again\n")
    make("uninstall")
    assert not [path for path in INSTALLED if path.exists() or path.is_symlink()]
    assert CONFIG.exists()  # changed by the administrator: kept
    make("uninstall")  # nothing left to do: still fine
    make("install")  # the fixture's final uninstall has something to remove again
    assert shutil.which("midclt", path=str(BINDIR))
