"""Every event carries a sequence number; core.subscribe(name, {"since": N}) replays exactly what was missed."""
from __future__ import annotations

import errno
from typing import Any

import pytest

from tests.support import Daemon, Rpc, RpcError, connect, unique


def updates(rpc: Rpc) -> list[dict[str, Any]]:
    return [e["params"] for e in rpc.events if e.get("method") == "collection_update"
            and e["params"]["collection"] == "vm.query"]


async def test_reconnect_with_since_replays_the_missed_vm_events(daemon: Daemon, vm: dict[str, Any]) -> None:
    async with connect(daemon) as first:
        await first.call("core.subscribe", "vm.query")
        await first.call("vm.update", vm["id"], {"description": unique("seen")})
        event = await first.next_event(lambda e: e.get("params", {}).get("collection") == "vm.query")
        seen = event["params"]["seq"]
        assert isinstance(seen, int) and "seq" not in event["params"]["fields"]
    # Offline: three changes (and a job, which is another event name) happen.
    async with connect(daemon) as other:
        missed = [unique("missed") for _ in range(3)]
        for text in missed:
            await other.call("vm.update", vm["id"], {"description": text})
    async with connect(daemon) as again:
        await again.call("core.subscribe", "vm.query", {"since": seen})
        replayed = [p for p in updates(again) if p["id"] == vm["id"]]
        assert [p["fields"]["description"] for p in replayed] == missed
        seqs = [p["seq"] for p in replayed]
        assert seqs == sorted(seqs) and seqs[0] > seen
        await again.call("vm.update", vm["id"], {"description": "live"})
        live = await again.next_event(lambda e: e.get("params", {}).get("fields", {}).get("description") == "live")
        assert live["params"]["seq"] > seqs[-1]
        # Asking again from the last one seen replays nothing.
        before = len(again.events)
        await again.call("core.subscribe", "vm.query", {"since": live["params"]["seq"]})
        assert len(again.events) == before


async def test_since_errors(unix_rpc: Rpc) -> None:
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.subscribe", "vm.query", {"since": 10**12})
    assert e.value.errno == errno.EINVAL and "has not been sent" in str(e.value.reason)
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.subscribe", "vm.query", {"since": -1})
    assert e.value.code == -32602
    with pytest.raises(RpcError) as e:
        await unix_rpc.call("core.subscribe", "vm.query", {"from": 1})
    assert e.value.code == -32602
