"""Restart from a list row and from the VM page's header (its states and job progress followed live), the create
wizard with an existing volume as the disk, and a full clone from the clone dialog (its errors beside the name,
the clone in the list live with its own volume); axe-core on every dialog opened."""
from __future__ import annotations

import re
import subprocess
from typing import Any

from tests.support import Daemon, unique
from tests.ui.conftest import axe_violations, login, make_vm, root, shot

# Every state the badge of one VM shows, in order, sampled every 20 ms from the moment it is installed: a state
# held for a moment (the STOPPED between a restart's power-off and its start) is seen too.
WATCH_STATES = """(selector) => {
  window.__states = [];
  const look = () => {
    const badge = document.querySelector(selector);
    const text = badge ? badge.textContent.trim() : null;
    if (text && window.__states[window.__states.length - 1] !== text) window.__states.push(text);
  };
  look();
  window.__statesTimer = setInterval(look, 20);
}"""


def disk_of(vm: dict[str, Any]) -> dict[str, Any]:
    attributes: dict[str, Any] = next(d["attributes"] for d in vm["devices"] if d["attributes"]["dtype"] == "DISK")
    return attributes


def test_restart_from_a_row_and_from_the_vm_page(page: Any, ui_daemon: Daemon) -> None:
    # No boot media: the firmware ignores the ACPI button, so each restart is powered off after the
    # shutdown timeout (5 s) and started again, which is the whole path a guest OS would shorten.
    vm = make_vm(ui_daemon)
    name = vm["name"]
    try:
        with root(ui_daemon) as c:
            c.call("vm.start", vm["id"])
            first_start = c.call("vm.status", vm["id"])["started_at"]
        login(page)
        r = page.locator(f'tr[data-vm="{name}"]')
        r.locator(".state .badge", has_text="RUNNING").wait_for()
        page.evaluate(WATCH_STATES, f'tr[data-vm="{name}"] .state .badge')
        r.get_by_label(f"More actions for {name}").click()
        assert axe_violations(page) == []
        r.get_by_role("button", name="Restart", exact=True).click()
        # The restart job's progress in the row, with what it waits for.
        bar = r.get_by_role("progressbar", name=re.compile(f"^Restarting VM {vm['id']}"))
        bar.wait_for()
        r.get_by_text(re.compile(f"ACPI shutdown|Waiting for {re.escape(name)}")).first.wait_for()
        shot(page, "restart-row-progress")
        page.get_by_text(f"Restart {name}: done").wait_for(timeout=90000)
        r.locator(".state .badge", has_text="RUNNING").wait_for()
        r.locator("progress").wait_for(state="detached")
        states = page.evaluate("window.__states")
        assert states[0] == "RUNNING" and "STOPPED" in states and states[-1] == "RUNNING", states
        with root(ui_daemon) as c:
            second_start = c.call("vm.status", vm["id"])["started_at"]
        assert second_start > first_start

        # The same from the VM page's header (reached from the list, as one does).
        r.get_by_role("link", name=name).click()
        head = page.locator(".page-head")
        head.locator(".badge", has_text="RUNNING").wait_for()
        page.evaluate(WATCH_STATES, ".page-head .badge")
        head.get_by_role("button", name="Restart", exact=True).click()
        head.get_by_role("progressbar", name=re.compile(f"^Restarting VM {vm['id']}")).wait_for()
        shot(page, "restart-page-progress")
        page.get_by_text(f"Restart {name}: done").wait_for(timeout=90000)
        head.locator(".badge", has_text="RUNNING").wait_for()
        head.locator("progress").wait_for(state="detached")
        states = page.evaluate("window.__states")
        assert states[0] == "RUNNING" and "STOPPED" in states and states[-1] == "RUNNING", states
        with root(ui_daemon) as c:
            assert c.call("vm.status", vm["id"])["started_at"] > second_start
            jobs = c.call("core.get_jobs", [["method", "=", "vm.restart"], ["arguments", "=", [vm["id"]]]])
        assert [j["state"] for j in jobs] == ["SUCCESS", "SUCCESS"]
    finally:
        with root(ui_daemon) as c:
            c.call("vm.delete", vm["id"], {"force": True})


def test_wizard_uses_an_existing_volume(page: Any, ui_daemon: Daemon) -> None:
    name = unique("exvol")
    image = ui_daemon.storage / f"{unique('src')}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "32M"], check=True)
    volume = f"{ui_daemon.pool}/{unique('vol')}"
    with root(ui_daemon) as c:
        made = c.call("vm.device.import_disk", {"source": str(image), "zvol_name": volume}, job=True)
        path = next(p for p, v in c.call("vm.device.disk_choices").items() if v == volume)
    assert made["zvol_name"] == volume
    try:
        login(page)
        page.get_by_role("button", name="Create VM").click()
        page.get_by_role("textbox", name="Name", exact=True).fill(name)
        for _ in range(4):
            page.get_by_role("button", name="Next").click()
        page.get_by_label("Disk", exact=True).select_option("existing")
        # The volume is offered by its name; nothing chosen yet is the server's error, beside the field.
        chooser = page.get_by_label("Volume", exact=True)
        assert chooser.locator("option", has_text=volume).count() == 1
        for _ in range(3):
            page.get_by_role("button", name="Next").click()
        page.get_by_role("button", name="Create VM").click()
        page.locator('[data-field="disk_path"] .error').wait_for()
        assert chooser.get_attribute("aria-invalid") == "true"
        shot(page, "wizard-existing-volume-error")
        chooser.select_option(label=volume)
        assert chooser.input_value() == path
        assert axe_violations(page) == []
        shot(page, "wizard-existing-volume")
        for _ in range(3):
            page.get_by_role("button", name="Next").click()
        page.get_by_text(path).wait_for()  # the summary names it
        page.get_by_role("button", name="Create VM").click()
        page.wait_for_url(re.compile(r"/ui/vms/\d+$"), timeout=90000)
        page.get_by_role("link", name="Hardware").click()
        page.locator('tr[data-device="DISK"]', has_text=volume).wait_for()
        shot(page, "vm-hardware-existing-volume")
        with root(ui_daemon) as c:
            created = c.call("vm.query", [["name", "=", name]], {"get": True})
            assert disk_of(created)["path"] == path
            assert path not in c.call("vm.device.disk_choices")  # in use now
    finally:
        with root(ui_daemon) as c:
            for vm in c.call("vm.query", [["name", "=", name]]):
                c.call("vm.delete", vm["id"], {"zvols": True})


def test_full_clone_from_the_list_with_errors_beside_the_name(page: Any, ui_daemon: Daemon) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{ui_daemon.pool}/{unique('src')}",
            "zvol_volsize": 1 << 20}
    vm = make_vm(ui_daemon, devices=[{"attributes": disk}])
    other = make_vm(ui_daemon)
    clone_name = unique("full")
    try:
        login(page)
        r = page.locator(f'tr[data-vm="{vm["name"]}"]')
        r.locator(".state .badge", has_text="STOPPED").wait_for()
        r.get_by_label(f"More actions for {vm['name']}").click()
        r.get_by_role("button", name="Clone", exact=True).click()
        dialog = page.get_by_role("dialog")
        field = dialog.get_by_label("Name of the clone")
        error = dialog.locator('[data-field="name"] .error')
        # A name another VM has: the dialog stays open and says so beside the name.
        field.fill(other["name"])
        dialog.get_by_role("button", name="Clone", exact=True).click()
        error.wait_for()
        assert error.inner_text() == f"A VM named {other['name']} already exists"
        assert field.get_attribute("aria-invalid") == "true"
        assert axe_violations(page) == []
        shot(page, "clone-name-taken")
        # A name the schema refuses: the same place.
        field.fill("no spaces allowed")
        dialog.get_by_role("button", name="Clone", exact=True).click()
        page.wait_for_function("document.querySelector('dialog [data-field=\"name\"] .error')?.textContent"
                               "?.includes('already exists') === false")
        error.wait_for()
        shot(page, "clone-name-invalid")
        with root(ui_daemon) as c:
            assert c.call("vm.query", [["name", "^", "no spaces"]]) == []
        field.fill(clone_name)
        dialog.get_by_role("button", name="Clone", exact=True).click()
        page.get_by_role("dialog").wait_for(state="detached", timeout=60000)
        page.get_by_text(f"Clone {vm['name']}: done").wait_for()
        # The list shows the clone without a reload, from the vm.query event.
        page.locator(f'tr[data-vm="{clone_name}"] .state .badge', has_text="STOPPED").wait_for()
        shot(page, "clone-in-list")
        with root(ui_daemon) as c:
            clone = c.call("vm.query", [["name", "=", clone_name]], {"get": True})
            source = c.call("vm.query", [["id", "=", vm["id"]]], {"get": True})
            ours, theirs = disk_of(clone), disk_of(source)
            assert ours["path"] != theirs["path"] and ours["zvol_name"] != theirs["zvol_name"]
            assert not clone["linked_clone"] and clone["cloned_from"] == vm["id"]
            assert c.call("vm.device.virtual_size", {"path": ours["path"]}) == 1 << 20
        page.locator(f'tr[data-vm="{clone_name}"]').get_by_role("link", name=clone_name).click()
        page.get_by_role("link", name="Hardware").click()
        details = page.locator('tr[data-device="DISK"] td').nth(1)
        details.wait_for()
        assert details.inner_text().split(" · ")[0] == ours["zvol_name"] != theirs["zvol_name"]
        shot(page, "clone-hardware")
    finally:
        with root(ui_daemon) as c:
            for each in c.call("vm.query", [["name", "=", clone_name]]) + [vm, other]:
                c.call("vm.delete", each["id"], {"zvols": True, "force": True})
