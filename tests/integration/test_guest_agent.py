"""vm.get_guest_info and vm.stop's guest-agent step on a VM without an agent (firmware only, which also ignores
the ACPI power button): null fields with the reason, and a stop that says it found no agent, then powers off."""
from __future__ import annotations

from typing import Any

import pytest

from tests.support import Rpc

pytestmark = pytest.mark.timeout(300)


async def test_guest_info_and_stop_without_an_agent(unix_rpc: Rpc, vm: dict[str, Any]) -> None:
    stopped = await unix_rpc.call("vm.get_guest_info", vm["id"])
    assert stopped == {"agent": False, "reason": "The VM is not running", "os": None, "hostname": None,
                       "timezone": None, "interfaces": None, "filesystems": None}
    await unix_rpc.call("vm.start", vm["id"])
    info = await unix_rpc.call("vm.get_guest_info", vm["id"])
    assert info["agent"] is False and "agent" in info["reason"] and info["os"] is None

    await unix_rpc.call("core.subscribe", "core.get_jobs")
    job_id = await unix_rpc.call("vm.stop", vm["id"], {"force_after_timeout": True})  # shutdown_timeout is 5
    descriptions = []
    while True:
        event = await unix_rpc.next_event(lambda e: e.get("params", {}).get("id") == job_id, timeout=60)
        fields = event["params"]["fields"]
        descriptions.append(fields["progress"]["description"])
        if fields["state"] in ("SUCCESS", "FAILED"):
            break
    assert fields["state"] == "SUCCESS", fields
    assert any("no guest agent to ask" in d for d in descriptions), descriptions
    assert descriptions[-1] == "Powered off after 5 s without ACPI shutdown"
