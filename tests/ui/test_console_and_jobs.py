"""The VM page's VNC console (noVNC drawing the test guest's screen in the page), its summary (live uptime,
graphs, guest card) and its list of the VM's jobs; the list's uptime column."""
from __future__ import annotations

import re
import sys
import time
from typing import Any

import pytest

from tests.e2e.support import BOOT_TIMEOUT, guest_vm, place_iso, ready_count
from tests.guest import build
from tests.support import Daemon, unique
from tests.ui.conftest import wait_for, axe_violations, login, make_vm, root, shot

# Sampled pixels of the page's VNC canvas that are not black.
CANVAS_PROBE = """(() => {
  const canvas = document.querySelector('[data-testid="vnc"] canvas');
  if (!canvas || !canvas.width) return {lit: 0};
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4 * 7) if (data[i] | data[i + 1] | data[i + 2]) lit++;
  return {lit, width: canvas.width, height: canvas.height};
})()"""


@pytest.mark.e2e
@pytest.mark.timeout(600)
def test_vnc_console_draws_the_running_guest_in_the_page(page: Any, ui_daemon: Daemon) -> None:
    iso = place_iso(build.guest_iso(log=lambda m: print(f"[guest] {m}", file=sys.stderr)), ui_daemon.tmp)
    vnc = {"dtype": "DISPLAY", "type": "VNC", "bind": "127.0.0.1", "web": True, "password": "vncpw1"}
    with root(ui_daemon) as c:
        vm = c.call("vm.create", guest_vm(unique("vnc"), iso, devices=[{"attributes": vnc}]))
        c.call("vm.start", vm["id"])
    try:
        login(page)
        page.goto(f"/ui/vms/{vm['id']}/console")
        page.get_by_text("VNC console: connected").wait_for(timeout=60000)
        # The guest's own screen: its firmware sets a mode of its own (QEMU's "not initialized" notice is
        # 640x480) and draws its boot progress, which appears on the page's canvas...
        wait_for(lambda: page.evaluate(CANVAS_PROBE), lambda v: v["width"] > 640 and v["lit"] > 100, 120,
                 "the guest's firmware screen on the page's canvas")
        assert axe_violations(page) == []
        shot(page, "vm-console-vnc")
        # ... and the page stays connected while the guest boots to its end (its kernel talks on the serial port).
        with root(ui_daemon) as c:
            wait_for(lambda: ready_count(c.call("vm.console_log", vm["id"])), lambda n: n >= 1, BOOT_TIMEOUT,
                     "GUEST-READY from the guest")
            sent = c.call("vm.get_display_connections", vm["id"])
        assert sent["live"] == 1 and sent["bytes_to_client"] > 1000
        # The booted kernel's console cursor blinks: the live screen keeps reaching the page.
        lit: set[bool] = set()
        for _ in range(40):
            lit.add(page.evaluate(CANVAS_PROBE)["lit"] > 0)
            time.sleep(0.25)
        assert lit == {True, False}
        page.get_by_text("VNC console: connected").wait_for()
        # Ctrl+Alt+Del travels to the VNC server as key events.
        page.get_by_role("button", name="Send Ctrl+Alt+Del").click()
        with root(ui_daemon) as c:
            wait_for(lambda: c.call("vm.get_display_connections", vm["id"])["bytes_to_guest"],
                     lambda n: n > sent["bytes_to_guest"], 10, "key events sent to the display")
        # The same display in a window of its own (noVNC's page, with a ticket of its own).
        with page.context.expect_page() as opened:
            page.get_by_role("button", name="Open in new window").click()
        window = opened.value
        window.wait_for_load_state()
        display = next(d["id"] for d in vm["devices"] if d["attributes"]["dtype"] == "DISPLAY")
        assert re.search(rf"/vm/display/{display}/vnc\.html\?", window.url), window.url
        window.close()
    finally:
        with root(ui_daemon) as c:
            c.call("vm.poweroff", vm["id"])
            c.call("vm.delete", vm["id"])


def job_item(page: Any, job_id: int) -> Any:
    return page.locator(f'li.job[data-job="{job_id}"]')


def test_vm_page_shows_its_uptime_and_its_jobs_live(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, memory=128)
    other = make_vm(ui_daemon)
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
        started = c.call("vm.status", vm["id"])["started_at"]
    login(page)
    # The list's uptime column, coarse: the running VM's, and none for the stopped one.
    page.locator(f'tr[data-vm="{vm["name"]}"] td[data-label="Uptime"]', has_text="min").wait_for()
    assert page.locator(f'tr[data-vm="{other["name"]}"] td[data-label="Uptime"]').inner_text() == "—"
    page.goto(f"/ui/vms/{vm['id']}")
    # The uptime counts up every second, from the QEMU process's start.
    uptime = page.get_by_test_id("uptime")
    first = uptime.inner_text()
    assert re.fullmatch(r"\d\d:\d\d:\d\d", first), first
    h, m, s = map(int, first.split(":"))
    assert abs(h * 3600 + m * 60 + s - (time.time() - started)) < 5
    page.wait_for_function(f"document.querySelector('[data-testid=uptime]').textContent !== {first!r}")
    # The rest of the summary: live graphs from the stats stream, and the guest card saying why it is empty
    # (this firmware-only guest has no agent to report its addresses).
    for graph in ("CPU", "Memory", "Disk", "Network"):
        page.get_by_role("img", name=re.compile(f"^{graph}: ")).wait_for(timeout=60000)
    page.wait_for_function("document.querySelector('figure.chart path[d^=M]') !== null", timeout=60000)
    # Without a balloon driver in the guest, the memory drawn is the QEMU process's, and the graph says so.
    page.get_by_role("img", name=re.compile("^Memory: QEMU process \\(host RSS\\) ")).wait_for()
    page.get_by_text("No guest agent answered").wait_for()
    shot(page, "vm-summary-uptime")

    page.get_by_role("navigation", name="VM sections").get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_text("No jobs about this VM yet.").wait_for()
    with root(ui_daemon) as c:
        # Started elsewhere: a stop the firmware ignores runs for the 5 s shutdown timeout, then fails.
        stop = c.call("vm.stop", vm["id"])
        item = job_item(page, stop)
        item.locator(".badge", has_text="RUNNING").wait_for()
        item.get_by_role("progressbar").wait_for()
        assert item.get_by_role("button", name="Abort").is_disabled()
        assert axe_violations(page) == []
        shot(page, "vm-jobs")
        item.locator(".badge", has_text="FAILED").wait_for(timeout=60000)
        assert "did not shut down" in item.locator(".error").inner_text()
        # Jobs naming the VM in other ways: a snapshot's object, then only the snapshot's id.
        snap = c.call("vm.snapshot.create", {"vm": vm["id"], "name": "s1"}, job=True)
        taken = c.call("core.get_jobs", [["method", "=", "vm.snapshot.create"]], {"order_by": ["-id"]})[0]["id"]
        job_item(page, taken).locator(".badge", has_text="SUCCESS").wait_for()
        deleted = c.call("vm.snapshot.delete", snap["id"])
        job_item(page, deleted).locator(".badge", has_text="SUCCESS").wait_for()
        # Another VM's job is not listed.
        elsewhere = c.call("vm.snapshot.create", {"vm": other["id"], "name": "s2"})
        c.call("vm.poweroff", vm["id"])
        image = ui_daemon.storage / f"{unique('raw')}.img"
        with open(image, "wb") as f, open("/dev/urandom", "rb") as noise:
            for _ in range(256):  # 256 MiB of data: its copy takes long enough to be aborted
                f.write(noise.read(2**20))
        raw = c.call("vm.device.create", {"vm": vm["id"], "attributes": {"dtype": "RAW", "path": str(image),
                                                                         "exists": True}})
        # An abortable job on one of the VM's devices, aborted from the page.
        copy = ui_daemon.storage / f"{unique('copy')}.qcow2"
        export = c.call("vm.device.export_disk", raw["id"], {"path": str(copy)})
        job_item(page, export).get_by_role("button", name="Abort").click()
        job_item(page, export).locator(".badge", has_text="ABORTED").wait_for(timeout=30000)
        c.call("core.job_wait", elsewhere, job=True)
    assert job_item(page, elsewhere).count() == 0
    assert page.locator("li.job").count() == 4
