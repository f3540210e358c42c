"""The create wizard (disk, uploaded ISO, NIC; server errors at their fields), the VM page's tabs, the
serial console, administration; axe-core on every page and a screenshot of each."""
from __future__ import annotations

import re
import subprocess
import time
from typing import Any

from tests.support import Daemon, unique
from tests.ui.conftest import axe_violations, login, make_vm, root, shot


def next_step(page: Any) -> None:
    page.get_by_role("button", name="Next").click()


def test_wizard_creates_a_vm_with_disk_iso_and_nic(page: Any, ui_daemon: Daemon) -> None:
    name = unique("wiz")
    iso = f"{unique('media')}.iso"
    login(page)
    page.get_by_role("button", name="Create VM").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("not a valid name!")
    assert axe_violations(page) == []
    shot(page, "wizard")
    next_step(page)
    page.get_by_label("Memory (MiB)").fill("256")
    next_step(page)
    next_step(page)
    # Install media: upload an image into the storage root; it is picked once written.
    page.set_input_files("#iso-upload", files=[{"name": iso, "mimeType": "application/octet-stream",
                                                "buffer": b"\0" * (2 * 2**20)}])
    page.get_by_role("button", name=re.compile(re.escape(iso))).and_(page.locator("[aria-pressed=true]")).wait_for()
    assert (ui_daemon.storage / iso).stat().st_size == 2 * 2**20
    assert axe_violations(page) == []
    shot(page, "wizard-media")
    next_step(page)
    page.get_by_label("Size (GiB)").fill("1")
    next_step(page)
    assert page.get_by_label("Attach to").input_value() != ""
    next_step(page)
    next_step(page)
    page.get_by_text("Summary").first.wait_for()
    shot(page, "wizard-summary")
    page.get_by_role("button", name="Create VM").click()
    # The server refuses the name: the wizard goes back to the name and shows why, beside the field.
    error = page.locator('[data-field="name"] .error')
    error.wait_for()
    assert "pattern" in error.inner_text() or "match" in error.inner_text()
    assert page.get_by_role("textbox", name="Name", exact=True).get_attribute("aria-invalid") == "true"
    shot(page, "wizard-error")
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    for _ in range(7):
        next_step(page)
    page.get_by_role("button", name="Create VM").click()
    page.wait_for_url(re.compile(r"/ui/vms/\d+$"), timeout=90000)
    page.get_by_role("link", name="Hardware").click()
    for dtype in ("DISK", "CDROM", "NIC", "DISPLAY"):
        page.locator(f'tr[data-device="{dtype}"]').wait_for()
    with root(ui_daemon) as c:
        vm = c.call("vm.query", [["name", "=", name]], {"get": True})
    kinds = {d["attributes"]["dtype"]: d["attributes"] for d in vm["devices"]}
    assert kinds["CDROM"]["path"].endswith(iso) and kinds["DISK"]["zvol_name"].endswith(f"{name}-disk0")
    assert vm["memory"] == 256


def test_vm_page_tabs_serial_console_and_device_dialogs(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, memory=128)
    login(page)
    page.goto(f"/ui/vms/{vm['id']}")
    page.get_by_role("heading", name=vm["name"]).wait_for()
    # Hardware: the add dialog offers a form per type (devices are added while the VM is stopped).
    page.get_by_role("link", name="Hardware").click()
    page.get_by_role("button", name="Add device").click()
    page.get_by_label("Device type").select_option("NIC")
    page.get_by_label("Attach to").wait_for()
    assert axe_violations(page) == []
    shot(page, "vm-add-device")
    page.get_by_role("button", name="Add", exact=True).click()
    page.locator('tr[data-device="NIC"]').wait_for()
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
    page.locator(".page-head .badge", has_text="RUNNING").wait_for()
    for tab in ("Summary", "Hardware", "Settings", "Snapshots", "Log", "Console"):
        page.get_by_role("navigation", name="VM sections").get_by_role("link", name=tab, exact=True).click()
        page.wait_for_timeout(400)
        assert axe_violations(page) == [], tab
        shot(page, f"vm-{tab.lower()}")
    # The serial console: the firmware's output appears, and what is typed reaches the guest.
    page.get_by_role("button", name="Open serial console").click()
    page.get_by_text("Serial console: connected").wait_for()
    page.locator(".xterm-screen").click()
    page.keyboard.type("hello")
    deadline = time.monotonic() + 20
    sent = 0
    while time.monotonic() < deadline and sent < 5:
        with root(ui_daemon) as c:
            sent = c.call("vm.get_console_viewers", vm["id"])["bytes_to_guest"]
        time.sleep(0.3)
    assert sent >= 5
    shot(page, "vm-serial")
    # Settings: a server error lands next to its field.
    page.get_by_role("link", name="Settings").click()
    page.get_by_role("textbox", name="Name", exact=True).fill("no spaces allowed")
    page.get_by_role("button", name="Save").click()
    page.locator('[data-field="name"] .error').wait_for()


def test_administration_pages_and_api_key_shown_once(browser: Any, ui_daemon: Daemon) -> None:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1920, "height": 1080},
                                  base_url=f"http://127.0.0.1:{ui_daemon.port}",
                                  permissions=["clipboard-read", "clipboard-write"])
    page = context.new_page()
    login(page)
    page.get_by_role("link", name="Administration").click()
    for section in ("Users", "Groups", "API keys", "VM groups", "Grants", "Audit log"):
        page.get_by_role("navigation", name="Administration sections").get_by_role("link", name=section, exact=True).click()
        page.wait_for_timeout(400)
        assert axe_violations(page) == [], section
        shot(page, f"admin-{section.lower().replace(' ', '-')}")
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Name").fill(unique("key"))
    page.get_by_role("button", name="Save").click()
    dialog = page.get_by_role("dialog", name="The new API key")
    key = dialog.get_by_role("textbox", name="API key").input_value()
    assert re.match(r"^\d+-\S+$", key)
    page.get_by_role("button", name="Copy").click()
    page.get_by_text("Copied").wait_for()
    assert page.evaluate("navigator.clipboard.readText()") == key
    shot(page, "admin-api-key-created")
    page.get_by_role("button", name="Done").click()
    assert page.get_by_text(key).count() == 0
    context.close()


def test_wizard_imports_a_disk_image_and_the_disk_grows(page: Any, ui_daemon: Daemon) -> None:
    name = unique("imp")
    image = ui_daemon.storage / f"{unique('img')}.qcow2"
    subprocess.run(["qemu-img", "create", "-q", "-f", "qcow2", str(image), "64M"], check=True)
    login(page)
    page.get_by_role("button", name="Create VM").click()
    page.get_by_role("textbox", name="Name", exact=True).fill(name)
    for _ in range(4):
        next_step(page)
    page.get_by_label("Disk", exact=True).select_option("import")
    page.get_by_role("button", name=re.compile(re.escape(image.name))).click()
    shot(page, "wizard-import")
    for _ in range(3):
        next_step(page)
    page.get_by_role("button", name="Create VM").click()
    page.wait_for_url(re.compile(r"/ui/vms/\d+$"), timeout=90000)
    page.get_by_role("link", name="Hardware").click()
    page.locator('tr[data-device="DISK"]').wait_for(timeout=60000)  # after the import job
    page.locator('tr[data-device="DISK"]').get_by_role("button", name="Grow").click()
    page.get_by_label("New size (GiB)").fill("1")
    page.get_by_role("button", name="Grow", exact=True).last.click()
    page.get_by_text("Disk grown").wait_for()
    with root(ui_daemon) as c:
        vm = c.call("vm.query", [["name", "=", name]], {"get": True})
        disk = next(d for d in vm["devices"] if d["attributes"]["dtype"] == "DISK")
        assert disk["attributes"]["zvol_name"].endswith(f"{name}-disk0")
        assert c.call("vm.device.virtual_size", {"path": disk["attributes"]["path"]}) == 2**30


def test_an_aborted_upload_leaves_nothing(page: Any, ui_daemon: Daemon) -> None:
    name = f"{unique('abort')}.iso"
    login(page)
    page.goto("/ui/vms/new")
    page.get_by_role("textbox", name="Name", exact=True).fill(unique("up"))
    for _ in range(3):
        next_step(page)
    cdp = page.context.new_cdp_session(page)
    cdp.send("Network.enable")
    cdp.send("Network.emulateNetworkConditions", {"offline": False, "latency": 0, "downloadThroughput": -1,
                                                  "uploadThroughput": 256 * 1024})
    page.set_input_files("#iso-upload", files=[{"name": name, "mimeType": "application/octet-stream",
                                                "buffer": b"\1" * (8 * 2**20)}])
    bar = page.get_by_role("progressbar", name=f"Uploading {name}")
    bar.wait_for()
    page.get_by_role("button", name="Abort upload").click()
    page.get_by_text("Upload aborted").wait_for()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and [p for p in ui_daemon.storage.iterdir() if p.name.startswith(".upload")]:
        time.sleep(0.2)
    assert not (ui_daemon.storage / name).exists()
    assert not [p for p in ui_daemon.storage.iterdir() if p.name.startswith(".upload")]


def test_snapshots_taken_and_deleted_from_the_page(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    login(page)
    page.goto(f"/ui/vms/{vm['id']}/snapshots")
    page.get_by_role("button", name="Take snapshot").click()
    page.get_by_label("Name").fill("before-upgrade")
    page.get_by_role("button", name="Take", exact=True).click()
    item = page.locator("ul.tree li", has_text="before-upgrade")
    item.wait_for(timeout=30000)
    item.get_by_text("current").wait_for()
    shot(page, "vm-snapshots-taken")
    item.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_text("No snapshots.").wait_for(timeout=30000)
    with root(ui_daemon) as c:
        assert c.call("vm.snapshot.query", [["vm", "=", vm["id"]]]) == []


def test_graphical_console_opens_in_its_own_tab(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, memory=128, devices=[{"attributes": {"dtype": "DISPLAY", "type": "SPICE", "web": True}}])
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
    login(page)
    page.goto(f"/ui/vms/{vm['id']}/console")
    button = page.get_by_role("button", name="Open graphical console (SPICE)")
    page.locator(".page-head .badge", has_text="RUNNING").wait_for()
    with page.context.expect_page() as opened:
        button.click()
    console = opened.value
    console.wait_for_load_state()
    assert "/vm/display/" in console.url, console.url
    assert console.locator("#spice-screen").count() == 1  # spice-html5's page, admitted with the ticket
    console.close()
    with root(ui_daemon) as c:
        c.call("vm.poweroff", vm["id"])
