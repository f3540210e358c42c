"""GET /metrics: bearer API keys and tokens, per-VM series, the daemon's own figures, parsed by prometheus_client."""
from __future__ import annotations

from typing import Any

import aiohttp
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.integration.test_auth_daemon import as_root, auth_daemon, logged_in, make_user
from tests.integration.test_vm_stats import wait_stats
from tests.support import Daemon, unique

__all__ = ["auth_daemon"]

pytestmark = pytest.mark.timeout(300)


async def scrape(d: Daemon, bearer: str | None) -> tuple[int, str]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer is not None else {}
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{d.port}/metrics", headers=headers) as r:
            return r.status, await r.text()


def samples(text: str) -> dict[str, list[Any]]:
    """Samples by name (counters keep their _total, histograms their _bucket/_sum/_count)."""
    out: dict[str, list[Any]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out.setdefault(sample.name, []).append(sample)
    return out


async def key_for(d: Daemon, roles: list[str]) -> tuple[str, int]:
    username, _, user_id = await make_user(d, roles)
    async with as_root(d) as root:
        key = await root.call("api_key.create", {"name": unique("prom"), "username": username})
    return key["key"], user_id


async def test_metrics(auth_daemon: Daemon) -> None:
    d = auth_daemon
    admin_key, _ = await key_for(d, ["READONLY_ADMIN"])
    tenant_key, tenant_id = await key_for(d, [])
    async with as_root(d) as root:
        mine, other = [await root.call("vm.create", {"name": unique("pm"), "memory": 64, "autostart": False})
                       for _ in range(2)]
        await root.call("acl.create", {"user": tenant_id, "role": "VM_READ", "vm": mine["id"]})
        try:
            await root.call("vm.start", mine["id"])
            await wait_stats(root, mine["id"])
            await root.call("core.subscribe", "vm.query")

            status, text = await scrape(d, admin_key)
            assert status == 200, text
            got = samples(text)
            running = {s.labels["id"]: s for s in got["middlewared_vm_running"]}
            assert running[str(mine["id"])].value == 1 and running[str(other["id"])].value == 0
            assert running[str(mine["id"])].labels["name"] == mine["name"]
            cpu = [s for s in got["middlewared_vm_cpu_seconds_total"] if s.labels["id"] == str(mine["id"])]
            assert cpu and cpu[0].value > 0
            kinds = {s.labels["kind"] for s in got["middlewared_vm_memory_bytes"]}
            assert {"rss", "maximum", "assigned"} <= kinds
            starts = [s for s in got["middlewared_calls_total"] if s.labels["method"] == "vm.start"]
            assert starts and starts[0].value >= 1
            buckets = [s for s in got["middlewared_call_duration_seconds_bucket"] if s.labels["method"] == "vm.start"]
            assert buckets[-1].labels["le"] == "+Inf" and buckets[-1].value == starts[0].value
            assert {s.labels["state"] for s in got["middlewared_jobs"]} >= {"RUNNING", "SUCCESS", "FAILED"}
            assert got["middlewared_connections"][0].value >= 1
            assert any(s.labels["event"] == "vm.query" and s.value >= 1
                       for s in got["middlewared_event_subscriptions"])

            # A scoped reader: its VM only, none of the daemon's figures.
            status, text = await scrape(d, tenant_key)
            assert status == 200, text
            got = samples(text)
            assert {s.labels["id"] for s in got["middlewared_vm_running"]} == {str(mine["id"])}
            assert "middlewared_calls_total" not in got and "middlewared_jobs" not in got
        finally:
            for vm in (mine, other):
                await root.call("vm.delete", vm["id"], {"force": True})


async def test_metrics_with_a_token(auth_daemon: Daemon) -> None:
    username, password, _ = await make_user(auth_daemon, ["READONLY_ADMIN"])
    async with logged_in(auth_daemon, username, password) as rpc:
        token = await rpc.call("auth.generate_token", 300, {}, False, False)
    status, text = await scrape(auth_daemon, token)
    assert status == 200 and "middlewared_connections" in text


async def test_metrics_refusals(auth_daemon: Daemon) -> None:
    d = auth_daemon
    for bearer in (None, "", "123-wrong", "not-a-token"):
        status, text = await scrape(d, bearer)
        assert status == 401 and "Bearer" in text, bearer
    async with aiohttp.ClientSession() as s:
        async with s.get(f"http://127.0.0.1:{d.port}/metrics", headers={"Authorization": "Basic eDp5"}) as r:
            assert r.status == 401 and r.headers["WWW-Authenticate"].startswith("Bearer")
    nobody_key, _ = await key_for(d, [])
    status, _ = await scrape(d, nobody_key)
    assert status == 403
