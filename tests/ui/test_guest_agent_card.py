"""The VM page's guest card with a guest agent answering: the test guest's OS, host name and its NIC's address
(the guest runs qemu-ga and gives its NIC a link-local address, printed as `GUEST-ADDRESS <nic> <address>`)."""
from __future__ import annotations

import os
import re
import sys
from typing import Any

import pytest

from tests.e2e.support import BOOT_TIMEOUT, guest_vm, host_bridge, place_iso, ready_count
from tests.guest import build
from tests.support import Daemon, unique
from tests.ui.conftest import wait_for, axe_violations, login, root, shot

_ADDRESS = re.compile(r"^GUEST-ADDRESS (\S+) (\S+)", re.M)


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_summary_shows_what_the_guest_agent_reports(page: Any, ui_daemon: Daemon) -> None:
    iso = place_iso(build.guest_iso(log=lambda m: print(f"[guest] {m}", file=sys.stderr)), ui_daemon.tmp)
    with host_bridge(f"mwui{os.getpid() % 100000}") as bridge, root(ui_daemon) as c:
        nic = {"attributes": {"dtype": "NIC", "type": "VIRTIO", "nic_attach": bridge}}
        vm = c.call("vm.create", guest_vm(unique("agentui"), iso, devices=[nic]))
        try:
            c.call("vm.start", vm["id"])
            text = wait_for(lambda: c.call("vm.console_log", vm["id"]), lambda t: ready_count(t) >= 1,
                            BOOT_TIMEOUT, "GUEST-READY")
            name, address = _ADDRESS.findall(text.replace("\r", ""))[-1]
            wait_for(lambda: c.call("vm.get_guest_info", vm["id"]), lambda i: i["agent"], 60, "guest agent answer")
            login(page)
            page.goto(f"/ui/vms/{vm['id']}")
            card = page.get_by_role("region", name="Guest")
            card.get_by_text("middlewared test guest (Debian kernel and busybox)").wait_for()
            facts = card.locator("dl").inner_text()
            assert "mwguest" in facts, facts
            assert f"{address}/16 ({name})" in facts, facts
            assert "127.0.0.1" not in facts and "::1/" not in facts, facts
            assert axe_violations(page) == []
            shot(page, "vm-summary-guest-agent")
        finally:
            c.call("vm.poweroff", vm["id"])
            c.call("vm.delete", vm["id"])
