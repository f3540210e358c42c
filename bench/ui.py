"""bench ui: the web UI in Chromium with 1,000 VMs, beside a plain-DOM page doing the same work in the same run.

Figures: time from navigation to the VM list rendered (the list's count shows every VM and its first rows
are in the DOM), and the main thread's busy time per second while 20 vm.query change events arrive each
second (Chrome's TaskDuration metric over a fixed window). The baseline page is served at the daemon's
origin by the browser itself (request interception): it logs in with the same token, calls vm.query, builds
the table with one innerHTML and patches a row's state cell per event, with no framework at all.
"""
from __future__ import annotations

import asyncio
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.common import RpcClient, Table, cleanup_libvirt, first_pong, fmt, quiet_libvirt, ratio, spawn_daemon, \
    stop_process

CHROMIUM = "/usr/bin/chromium"
PASSWORD = "bench-ui-password"
IN_FLIGHT = 16
EVENTS_PER_S = 20
WINDOW_S = 10.0

RAW_PAGE = """<!doctype html><html><head><meta charset="utf-8"><title>raw</title></head><body><table><tbody id="t">
</tbody></table><script>
const ws = new WebSocket(`ws://${location.host}/api/current`);
let id = 0; const pending = new Map();
const call = (method, params = []) => new Promise((ok) => { pending.set(++id, ok);
  ws.send(JSON.stringify({jsonrpc: "2.0", id, method, params})); });
const esc = (s) => String(s).replace(/[&<]/g, (c) => c === "&" ? "&amp;" : "&lt;");
ws.onmessage = (e) => { const m = JSON.parse(e.data);
  if (pending.has(m.id)) { pending.get(m.id)(m.result); pending.delete(m.id); return; }
  if (m.method === "collection_update" && m.params.fields) {
    const row = document.getElementById("vm" + m.params.id);
    if (row) { row.cells[1].textContent = m.params.fields.status.state; row.cells[2].textContent = m.params.fields.description; } } };
ws.onopen = async () => {
  await call("auth.login_ex", [{mechanism: "TOKEN_PLAIN", token: localStorage.getItem("middlewared.token")}]);
  const vms = await call("vm.query");
  document.getElementById("t").innerHTML = vms.map((v) => `<tr id="vm${v.id}"><td>${esc(v.name)}</td>` +
    `<td>${v.status.state}</td><td>${esc(v.description)}</td><td>${v.vcpus}</td><td>${v.memory}</td></tr>`).join("");
  document.title = "ready " + vms.length;
  await call("core.subscribe", ["vm.query"]);
};
</script></body></html>"""


async def create_vms(client: RpcClient, count: int) -> list[int]:
    ids: list[int] = []
    queue = iter(range(count))

    async def worker() -> None:
        for i in queue:
            vm = await client.call("vm.create", {"name": f"benchui{i:04d}", "memory": 64, "autostart": False})
            ids.append(vm["id"])
    await asyncio.gather(*(worker() for _ in range(IN_FLIGHT)))
    return ids


async def load_time(page: Any, url: str, ready: str) -> float:
    """Milliseconds from navigation start until the ready expression holds."""
    await page.goto(url)
    await page.wait_for_function(ready, polling="raf", timeout=60000)
    return float(await page.evaluate("performance.now()"))


async def busy_per_second(page: Any, client: RpcClient, ids: list[int]) -> float:
    """Main-thread busy milliseconds per second while EVENTS_PER_S VM changes arrive each second."""
    cdp = await page.context.new_cdp_session(page)
    await cdp.send("Performance.enable")

    async def task_duration() -> float:
        metrics = (await cdp.send("Performance.getMetrics"))["metrics"]
        return float(next(m["value"] for m in metrics if m["name"] == "TaskDuration"))
    before, start = await task_duration(), time.perf_counter()
    sent = 0
    while time.perf_counter() - start < WINDOW_S:
        tick = time.perf_counter()
        await asyncio.gather(*(client.call("vm.update", ids[(sent + k) % len(ids)], {"description": f"tick {sent + k}"})
                               for k in range(EVENTS_PER_S)))
        sent += EVENTS_PER_S
        await asyncio.sleep(max(0.0, 1.0 - (time.perf_counter() - tick)))
    elapsed = time.perf_counter() - start
    used = await task_duration() - before
    await cdp.detach()
    return used * 1000 / elapsed


async def run(vms: int = 1000) -> None:
    from playwright.async_api import async_playwright
    quiet_libvirt()
    table = Table(f"bench ui: the web UI with {vms:,} VMs (Chromium, 1920x1080)",
                  ["figure", "web UI", "plain DOM", "ratio", "target"])
    with tempfile.TemporaryDirectory(prefix="mwbenchui-") as tmp:
        daemon = spawn_daemon(Path(tmp), pool=f"mwbenchui{int(time.time())}")
        try:
            await first_pong(daemon.unix, daemon.process)
            async with await RpcClient.open(daemon.unix) as root:
                await root.call("user.set_root_password", PASSWORD)
                ids = await create_vms(root, vms)
                base = f"http://127.0.0.1:{daemon.port}"
                async with async_playwright() as p:
                    # The baseline page is the browser's own response: Chromium would count it as a public
                    # page reaching a local address and block its WebSocket.
                    browser = await p.chromium.launch(executable_path=CHROMIUM, args=[
                        "--no-sandbox", "--disable-features=LocalNetworkAccessChecks"])
                    page = await browser.new_page(viewport={"width": 1920, "height": 1080}, bypass_csp=True)
                    await page.route(f"{base}/raw-baseline", lambda route: route.fulfill(
                        body=RAW_PAGE, content_type="text/html"))
                    await page.goto(f"{base}/ui/")
                    await page.get_by_label("Username").fill("root")
                    await page.get_by_label("Password").fill(PASSWORD)
                    await page.get_by_role("button", name="Log in").click()
                    await page.get_by_role("button", name="Log out").wait_for()
                    ui_ready = (f"document.querySelector('.page-head .muted')?.textContent.startsWith('{vms} total')"
                                " && document.querySelectorAll('tbody tr').length > 0")
                    ui_ms = min([await load_time(page, f"{base}/ui/", ui_ready) for _ in range(3)])
                    ui_busy = await busy_per_second(page, root, ids)
                    raw_ready = f"document.title === 'ready {vms}'"
                    raw_ms = min([await load_time(page, f"{base}/raw-baseline", raw_ready) for _ in range(3)])
                    raw_busy = await busy_per_second(page, root, ids)
                    await browser.close()
            table.add("navigation -> VM list rendered (ms, best of 3)", fmt(ui_ms, 0), fmt(raw_ms, 0),
                      ratio(ui_ms, raw_ms), "< 1,000")
            table.add(f"main thread busy, {EVENTS_PER_S} events/s (ms per s)", fmt(ui_busy, 1), fmt(raw_busy, 1),
                      ratio(ui_busy, raw_busy), "responsive")
            table.note("The web UI renders the first 100 rows and adds more as one scrolls; the plain page "
                       "builds every row at once but has no framework, no store and no live jobs or stats.")
        finally:
            stop_process(daemon.process)
            cleanup_libvirt(daemon.pool, Path(tmp) / "db" / "middlewared.db")
    print(table.render())
