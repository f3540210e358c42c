"""e2e fixtures: the guest ISO (built once and cached), placed under a daemon's storage root; a test bridge."""
from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path
from typing import Iterator

import pytest

from tests.e2e.support import host_bridge, place_iso
from tests.guest import build
from tests.support import Daemon

OVMF_CODE = "/usr/share/OVMF/OVMF_CODE.fd"


@pytest.fixture(scope="session")
def qemu_host() -> None:
    """Skip the e2e tests on a machine that cannot run a QEMU guest at all (TCG is enough)."""
    if shutil.which("qemu-system-x86_64") is None:
        pytest.skip("qemu-system-x86_64 is not installed: this machine cannot run guests (make apt installs it)")
    if not os.path.exists(OVMF_CODE):
        pytest.skip(f"no UEFI firmware ({OVMF_CODE}): this machine cannot boot the UEFI test guest")


@pytest.fixture(scope="session")
def guest_iso(qemu_host: None) -> Path:
    """The test guest's ISO, built on first use (about 25 s) and cached by content hash."""
    return build.guest_iso(log=lambda m: print(f"[guest] {m}", file=sys.stderr, flush=True))


@pytest.fixture(scope="session")
def daemon_iso(daemon: Daemon, guest_iso: Path) -> str:
    """The guest ISO's path under the session daemon's storage root."""
    return place_iso(guest_iso, daemon.tmp)


@pytest.fixture(scope="session")
def bridge() -> Iterator[str]:
    """A host bridge for the guests' NICs."""
    with host_bridge(f"mwe2e{os.getpid() % 100000}") as name:
        yield name
