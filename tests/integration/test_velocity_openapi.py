"""The OpenAPI 3.1 document at /v/openapi.json stays true: schemathesis runs against the live daemon (no 500s,
every status, body and header as documented, authkeys enforced, malformed input refused)."""
from __future__ import annotations

import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Iterator

import pytest

from tests.integration.velocity_support import as_root, new_group, private_daemon
from tests.support import Daemon

ST = Path(sys.executable).parent / "st"
# Beyond success, the answers Velocity documents for valid requests: quotas and transitions (406), a taken
# name (409), a missing length (411), a body too large (413), resources that do not exist (404).
CONFIG = """
[checks.positive_data_acceptance]
expected-statuses = ["2xx", "401", "403", "404", "406", "409", "411", "413"]
"""


@pytest.fixture(scope="module")
def st_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A daemon of its own: schemathesis creates and removes users, groups and VMs at random."""
    with private_daemon("mwvelst") as d:
        yield d


def schemathesis(daemon: Daemon, *args: str) -> str:
    with tempfile.NamedTemporaryFile("w", suffix=".toml") as config:
        config.write(CONFIG)
        config.flush()
        done = subprocess.run([str(ST), "--config-file", config.name, "run",
                               f"http://127.0.0.1:{daemon.port}/v/openapi.json", "--checks", "all",
                               "--max-examples", "10", "--phases", "examples,coverage,fuzzing", "--workers", "1",
                               "--seed", "1", "--request-timeout", "120", "--max-response-time", "120", *args],
                              capture_output=True, text=True, timeout=400)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    return done.stdout


async def test_the_document_holds_against_the_live_daemon(st_daemon: Daemon) -> None:
    async with as_root(st_daemon) as root:
        await new_group(root)  # something for gid-taking operations to find
        await root.ok("PUT", "/m/pool/assign", {"gid": 0, "mpid": 1, "quota": 1 << 20, "write": True,
                                                "manage": True})
        key = str(root.key)
        # The authkey endpoints alone (they end the key they are given), then everything else as root.
        schemathesis(st_daemon, "--include-path", "/u/auth")
        out = schemathesis(st_daemon, "--exclude-path", "/u/auth", "-H", f"Authorization: Bearer {key}")
    assert "passed" in out
    assert "ERROR middlewared.plugins.velocity" not in st_daemon.log()
