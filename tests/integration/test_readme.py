"""The README runs: every ```sh block, in order, against a fresh daemon; a failing command fails the test.

How a block is run: `bash -e -o pipefail` from the repository root, the venv's bin first on PATH, and `midclt` a shell
function that adds `-u <the daemon's unix socket>` first (a `-u` written in the block comes later and wins).

What is substituted in a block's text, because it names this machine's defaults:
  127.0.0.1:8016 (the default port)              -> 127.0.0.1:<the daemon's port>
  /run/middleware/middlewared.sock               -> the daemon's socket
  /mnt/iso/ (under the default storage root)     -> <the daemon's storage root>/iso/ (also $GUEST_ISO for make)
  "middlewared/ (the default pool, in zvol_name) -> "<the daemon's pool>/
  the libvirt network default (net-start, nic_attach) -> an isolated network of the test's own, defined stopped
  "name": "demo"                                 -> a unique name (domains are named <id>_<name> on a shared libvirtd)
Ids need no substitution: the daemon is fresh, so the README's ids (the first VM is 1) are the real ones.

A block opts out with the HTML comment `<!-- readme-test: skip (why) -->` on the line right before its fence:
for commands that need another terminal (`make run`), change the system (`make install`) or need files of the
reader's own (an OVA appliance); test_blocks_are_found_and_skips_say_why keeps that list that short.
"""
from __future__ import annotations

import re
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import pytest

from tests.support import ROOT, Daemon, cleanup_libvirt, start_daemon, stop_daemon, unique

pytestmark = [pytest.mark.slow, pytest.mark.timeout(1800)]

README = ROOT / "README.md"
SKIP = re.compile(r"^<!--\s*readme-test:\s*skip\s*\((?P<why>[^)]+)\)\s*-->$")
BLOCK_TIMEOUT = 900  # the first `make guest-iso` on a fresh machine downloads and builds the guest


@dataclass(frozen=True)
class Block:
    """One ```sh block of the README: where it starts, its text, and why it is skipped (or None)."""

    line: int
    text: str
    skip: str | None


def sh_blocks(markdown: str) -> list[Block]:
    """The ```sh blocks in order, with the skip reason of the comment right before each fence."""
    blocks: list[Block] = []
    lines = markdown.splitlines()
    i = 0
    while i < len(lines):
        if lines[i].strip() == "```sh":
            end = next(j for j in range(i + 1, len(lines)) if lines[j].strip() == "```")
            marker = SKIP.match(lines[i - 1].strip()) if i else None
            blocks.append(Block(i + 1, "\n".join(lines[i + 1:end]) + "\n", marker["why"] if marker else None))
            i = end
        i += 1
    return blocks


def test_blocks_are_found_and_skips_say_why() -> None:
    blocks = sh_blocks(README.read_text())
    assert [b.skip is None for b in blocks].count(True) >= 4
    skipped = [b.text for b in blocks if b.skip]
    assert len(skipped) <= 3, skipped
    assert any("make run" in text for text in skipped) and any("make install" in text for text in skipped)
    assert sh_blocks("x\n<!-- readme-test: skip (why not) -->\n```sh\na\n```\n```sh\nb\n```\n") == [
        Block(3, "a\n", "why not"), Block(6, "b\n", None)]


@pytest.fixture(scope="module")
def network(libvirtd: str) -> Iterator[str]:
    """A libvirt network with only a bridge (nothing leaves the host), defined but stopped as Debian's default."""
    name = unique("mwreadme")
    with tempfile.NamedTemporaryFile("w", suffix=".xml") as xml:
        xml.write(f"<network><name>{name}</name><bridge name='mwrb{uuid.uuid4().hex[:8]}'/></network>")
        xml.flush()
        subprocess.run(["virsh", "-c", "qemu:///system", "net-define", xml.name], check=True, capture_output=True)
    yield name
    for command in ("net-destroy", "net-undefine"):
        subprocess.run(["virsh", "-c", "qemu:///system", command, name], capture_output=True)


@pytest.fixture(scope="module")
def fresh_daemon(libvirtd: str) -> Iterator[Daemon]:
    with tempfile.TemporaryDirectory(prefix="mwreadme-") as tmp:
        d = start_daemon(Path(tmp), pool=unique("mwreadme"))
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool, Path(tmp) / "db" / "middlewared.db")


def substitute(text: str, d: Daemon, network: str, name: str) -> str:
    """The block as it must read for the test daemon (see the module docstring)."""
    for old, new in (('"name": "demo"', f'"name": "{name}"'),
                     ("127.0.0.1:8016", f"127.0.0.1:{d.port}"),
                     ("/run/middleware/middlewared.sock", d.socket),
                     ("/mnt/iso/", f"{d.storage}/iso/"),
                     ('"middlewared/', f'"{d.pool}/'),
                     ("net-start default", f"net-start {network}"),
                     ('"nic_attach": "default"', f'"nic_attach": "{network}"')):
        text = text.replace(old, new)
    return text


def test_readme_runs_top_to_bottom(fresh_daemon: Daemon, network: str) -> None:
    d = fresh_daemon
    prelude = (f'export PATH="{Path(sys.executable).parent}:$PATH" GUEST_ISO="{d.storage}/iso/middlewared-guest.iso"\n'
               f'midclt() {{ command midclt -u "ws+unix://{d.socket}" "$@"; }}\n')
    ran = 0
    name = unique("demo")
    for block in sh_blocks(README.read_text()):
        if block.skip:
            continue
        script = substitute(block.text, d, network, name)
        proc = subprocess.run(["bash", "-e", "-o", "pipefail", "-c", prelude + script], cwd=ROOT, text=True,
                              capture_output=True, timeout=BLOCK_TIMEOUT, stdin=subprocess.DEVNULL)
        assert proc.returncode == 0, (
            f"README.md block at line {block.line} failed ({proc.returncode}):\n{script}\n--- stdout\n"
            f"{proc.stdout[-3000:]}\n--- stderr\n{proc.stderr[-3000:]}\n--- daemon log\n{d.log()[-3000:]}")
        ran += 1
    assert ran >= 4
    assert "Traceback" not in d.log()
