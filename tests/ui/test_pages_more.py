"""Points of the web UI the other browser tests leave out: every VM tab at a phone's width, what the first
load transfers, sorting, the per-row menu, changing and ejecting CD-ROM media while running, a snapshot
with RAM, reverting a snapshot, saving settings, the QEMU log download, the wizard's host limits, a device
edited and removed, a user, group and grant made in the administration pages, a reconnection after a
network cut that catches up with what happened meanwhile."""
from __future__ import annotations

import re
import socket
import subprocess
import threading
from typing import Any

from tests.support import Daemon, unique
from tests.ui.conftest import axe_violations, login, make_user, make_vm, root, shot
from tests.ui.test_vm_list import NO_SIDEWAYS_SCROLL, row

TABS = ("Summary", "Hardware", "Settings", "Snapshots", "Log", "Console", "Jobs")
VNC = {"dtype": "DISPLAY", "type": "VNC", "bind": "127.0.0.1", "web": True, "password": "vncpw2"}


def virsh(*args: str) -> str:
    return subprocess.run(["virsh", "-c", "qemu:///system", *args], check=True, capture_output=True,
                          text=True).stdout


def test_every_vm_tab_fits_a_phone(browser: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, memory=128, description="a VM with a rather long description that must wrap on phones",
                 devices=[{"attributes": VNC}])
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
        c.call("vm.stop", vm["id"])  # a job for the Jobs tab: it fails, as the firmware ignores ACPI
    context = browser.new_context(bypass_csp=True, viewport={"width": 390, "height": 844},
                                  base_url=f"http://127.0.0.1:{ui_daemon.port}", color_scheme="dark")
    page = context.new_page()
    try:
        login(page)
        page.goto(f"/ui/vms/{vm['id']}")
        page.locator(".page-head .badge", has_text="RUNNING").wait_for()
        for tab in TABS:
            page.get_by_role("navigation", name="VM sections").get_by_role("link", name=tab, exact=True).click()
            if tab == "Console":
                page.get_by_text("VNC console: connected").wait_for(timeout=60000)
            if tab == "Jobs":
                page.locator("li.job").first.wait_for()
            page.wait_for_timeout(400)
            assert page.evaluate(NO_SIDEWAYS_SCROLL), tab
            assert axe_violations(page) == [], tab
            shot(page, f"vm-{tab.lower()}-390")
        # Under the daemon's real CSP (the axe checks above need it bypassed), noVNC loads and connects.
        strict = browser.new_context(base_url=f"http://127.0.0.1:{ui_daemon.port}")
        page = strict.new_page()
        refused: list[str] = []
        page.on("console", lambda m: refused.append(m.text) if "Content Security Policy" in m.text else None)
        login(page)
        page.goto(f"/ui/vms/{vm['id']}/console")
        page.get_by_text("VNC console: connected").wait_for(timeout=60000)
        strict.close()
        assert refused == []
        # A reader is not given the display's password: noVNC asks for it, and the reader only watches.
        username, password, _ = make_user(ui_daemon, ["VM_READ"])
        reader = browser.new_context(bypass_csp=True, base_url=f"http://127.0.0.1:{ui_daemon.port}")
        page = reader.new_page()
        login(page, username, password)
        page.goto(f"/ui/vms/{vm['id']}/console")
        page.get_by_text("VNC console: password needed").wait_for(timeout=60000)
        assert axe_violations(page) == []
        page.get_by_label("Display password").fill(VNC["password"])
        page.get_by_role("button", name="Connect", exact=True).click()
        page.get_by_text("VNC console: connected (watching only)").wait_for()
        assert page.get_by_role("button", name="Send Ctrl+Alt+Del").count() == 0
        reader.close()
    finally:
        context.close()
        with root(ui_daemon) as c:
            c.call("vm.poweroff", vm["id"])


def test_first_load_transfers_under_500_kb(browser: Any, ui_daemon: Daemon) -> None:
    make_vm(ui_daemon)
    context = browser.new_context(base_url=f"http://127.0.0.1:{ui_daemon.port}")
    page = context.new_page()
    sizes: list[int] = []
    page.on("requestfinished", lambda r: sizes.append(r.sizes()["responseBodySize"] + r.sizes()["responseHeadersSize"]))
    login(page)
    page.locator("tbody tr").first.wait_for()
    page.wait_for_load_state("networkidle")
    context.close()
    # Compressed bytes on the wire, as Chromium counted them, up to the VM list shown.
    assert 0 < sum(sizes) < 500_000, sum(sizes)


def test_vm_list_sorts_by_column(page: Any, ui_daemon: Daemon) -> None:
    tag = unique("sort")
    for name, memory in (("b", 96), ("c", 64), ("a", 128)):
        make_vm(ui_daemon, name=f"{tag}_{name}", memory=memory)
    login(page)
    page.get_by_label("Search VMs").fill(tag)
    names = lambda: page.locator("tbody tr").evaluate_all("rows => rows.map((r) => r.dataset.vm)")  # noqa: E731
    page.wait_for_function("document.querySelectorAll('tbody tr').length === 3")
    assert names() == [f"{tag}_a", f"{tag}_b", f"{tag}_c"]
    page.get_by_role("button", name="Name", exact=True).click()
    assert names() == [f"{tag}_c", f"{tag}_b", f"{tag}_a"]
    page.get_by_role("button", name="Memory", exact=True).click()
    assert names() == [f"{tag}_c", f"{tag}_b", f"{tag}_a"]
    page.get_by_role("button", name="Memory", exact=True).click()
    assert names() == [f"{tag}_a", f"{tag}_b", f"{tag}_c"]


def test_row_menu_suspends_and_resumes(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
    login(page)
    r = row(page, vm["name"])
    r.locator(".state .badge", has_text="RUNNING").wait_for()
    r.get_by_label(f"More actions for {vm['name']}").click()
    r.get_by_role("button", name="Suspend", exact=True).click()
    r.locator(".state .badge", has_text="SUSPENDED").wait_for()
    r.get_by_role("button", name=f"Resume {vm['name']}").click()
    r.locator(".state .badge", has_text="RUNNING").wait_for()
    r.get_by_label(f"More actions for {vm['name']}").click()
    r.get_by_role("button", name="Power off", exact=True).click()
    page.get_by_role("dialog").get_by_role("button", name="Power off").click()
    r.locator(".state .badge", has_text="STOPPED").wait_for()


def test_cdrom_media_changed_and_ejected_while_running(page: Any, ui_daemon: Daemon) -> None:
    first, second = (ui_daemon.storage / f"{unique('cd')}.iso" for _ in range(2))
    for iso in (first, second):
        iso.write_bytes(b"\0" * 2**20)
    vm = make_vm(ui_daemon, memory=128, devices=[{"attributes": {"dtype": "CDROM", "path": str(first)}}])
    domain = f"{vm['id']}_{vm['name']}"
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
    try:
        login(page)
        page.goto(f"/ui/vms/{vm['id']}/hardware")
        cdrom = page.locator('tr[data-device="CDROM"]')
        cdrom.get_by_role("button", name="Change media").click()
        page.get_by_role("dialog").get_by_role("button", name=re.compile(re.escape(second.name))).click()
        page.get_by_role("dialog").get_by_role("button", name="Save").click()
        cdrom.get_by_text(second.name).wait_for()
        assert str(second) in virsh("domblklist", domain)  # the running domain's drive has the new media
        cdrom.get_by_role("button", name="Eject").click()
        cdrom.get_by_text("(no media)").wait_for()
        assert second.name not in virsh("domblklist", domain)
        shot(page, "vm-hardware-ejected")
    finally:
        with root(ui_daemon) as c:
            c.call("vm.poweroff", vm["id"])


def test_snapshot_reverted_from_the_page(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, description="before")
    with root(ui_daemon) as c:
        c.call("vm.snapshot.create", {"vm": vm["id"], "name": "base"}, job=True)
        c.call("vm.snapshot.create", {"vm": vm["id"], "name": "later"}, job=True)
    login(page)
    page.goto(f"/ui/vms/{vm['id']}/snapshots")
    base = page.locator("ul.tree li", has_text="base").first
    base.get_by_role("button", name="Revert").first.click()
    page.get_by_role("dialog").get_by_role("button", name="Revert").click()
    page.get_by_text(f"Revert {vm['name']}: done").wait_for(timeout=60000)
    base.get_by_text("current").first.wait_for()
    with root(ui_daemon) as c:
        snaps = {s["name"]: s for s in c.call("vm.snapshot.query", [["vm", "=", vm["id"]]])}
    assert snaps["base"]["current"] is True and snaps["later"]["current"] is False


def test_settings_saved_and_qemu_log_downloaded(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
        c.call("vm.poweroff", vm["id"])
    login(page)
    page.goto(f"/ui/vms/{vm['id']}/settings")
    page.get_by_label("Description").fill("changed in the page")
    page.get_by_label("Shutdown timeout (seconds)").fill("42")
    page.get_by_role("button", name="Save").click()
    page.get_by_text(f"Saved {vm['name']}").wait_for()
    with root(ui_daemon) as c:
        saved = c.call("vm.get_instance", vm["id"])
    assert saved["description"] == "changed in the page" and saved["shutdown_timeout"] == 42
    page.get_by_role("link", name="Log").click()
    with page.expect_download() as download:
        page.get_by_role("button", name="Download QEMU log").click()
    path = download.value.path()
    assert download.value.suggested_filename == f"{vm['name']}-qemu.log"
    assert b"qemu-system" in open(path, "rb").read() or b"QEMU" in open(path, "rb").read()


def test_wizard_shows_the_host_limits(page: Any, ui_daemon: Daemon) -> None:
    with root(ui_daemon) as c:
        maximum = c.call("vm.maximum_supported_vcpus")
    login(page)
    page.goto("/ui/vms/new")
    page.get_by_role("textbox", name="Name", exact=True).fill(unique("lim"))
    page.get_by_role("button", name="Next").click()
    page.get_by_text(f"this host supports up to {maximum}.").wait_for()
    page.get_by_text(re.compile(r"Available on the host now: [\d.]+ [KMGT]iB")).wait_for()


def dialog_save(page: Any) -> None:
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    page.get_by_role("dialog").wait_for(state="detached")


def test_administration_grants_a_group_of_users_one_vm_group(page: Any, browser: Any, ui_daemon: Daemon) -> None:
    mine, other = make_vm(ui_daemon), make_vm(ui_daemon)
    username, password, group, team = unique("adm"), unique("pw-"), unique("vmg"), unique("team")
    login(page)
    admin = page.get_by_role("navigation", name="Administration sections")
    page.get_by_role("link", name="Administration").click()
    admin.get_by_role("link", name="Users", exact=True).click()
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    dialog_save(page)
    page.get_by_role("cell", name=username, exact=True).wait_for()
    admin.get_by_role("link", name="Groups", exact=True).click()
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Name", exact=True).fill(team)
    page.get_by_label("Members").select_option(label=username)
    dialog_save(page)
    page.get_by_role("cell", name=team, exact=True).wait_for()
    admin.get_by_role("link", name="VM groups", exact=True).click()
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Name", exact=True).fill(group)
    page.get_by_label("VMs").select_option(label=mine["name"])
    dialog_save(page)
    page.get_by_role("cell", name=group, exact=True).wait_for()
    admin.get_by_role("link", name="Grants", exact=True).click()
    page.get_by_role("button", name="Add").click()
    page.get_by_label("Role").select_option("VM_WRITE")
    page.get_by_label("or account group").select_option(label=team)
    page.get_by_label("On VM group (and below)").select_option(label=group)
    dialog_save(page)
    grant = page.get_by_role("row").filter(has_text=team)
    grant.wait_for()
    assert axe_violations(page) == []
    shot(page, "admin-grant-created")
    # The new user, through the account group, sees and may start only the VM of that VM group.
    context = browser.new_context(bypass_csp=True, base_url=f"http://127.0.0.1:{ui_daemon.port}")
    theirs = context.new_page()
    login(theirs, username, password)
    row(theirs, mine["name"]).get_by_role("button", name=f"Start {mine['name']}").wait_for()
    assert row(theirs, other["name"]).count() == 0
    context.close()
    grant.get_by_role("button", name="Delete").click()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    grant.wait_for(state="detached")
    with root(ui_daemon) as c:
        account_group = c.call("group.query", [["name", "=", team]], {"get": True})
        assert c.call("acl.query", [["group", "=", account_group["id"]]]) == []


class Relay:
    """A TCP relay between the browser and the daemon that the test can cut, as a network would."""

    def __init__(self, port: int) -> None:
        self.target = port
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        self.open = True
        self.links: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.listener.accept()
            except OSError:
                return
            if not self.open:
                client.close()
                continue
            server = socket.create_connection(("127.0.0.1", self.target))
            self.links += [client, server]
            for a, b in ((client, server), (server, client)):
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.open = False
        for s in self.links:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self.links = []

    def close(self) -> None:
        self.cut()
        self.listener.close()


def test_reconnect_replays_what_happened_meanwhile(browser: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    relay = Relay(ui_daemon.port)
    context = browser.new_context(base_url=f"http://127.0.0.1:{relay.port}")
    page = context.new_page()
    try:
        login(page)
        row(page, vm["name"]).locator(".state .badge", has_text="STOPPED").wait_for()
        relay.cut()
        page.get_by_role("alert").get_by_text("Connection to the server lost").wait_for()
        with root(ui_daemon) as c:
            c.call("vm.start", vm["id"])  # while the page cannot hear of it
        relay.open = True
        # Back by itself, still logged in (its token), and the list shows the change it missed.
        row(page, vm["name"]).locator(".state .badge", has_text="RUNNING").wait_for(timeout=60000)
        assert page.get_by_role("alert").count() == 0
        page.get_by_role("button", name="Log out").wait_for()
    finally:
        context.close()
        relay.close()
        with root(ui_daemon) as c:
            c.call("vm.poweroff", vm["id"])


def test_device_edited_and_removed(page: Any, ui_daemon: Daemon) -> None:
    with root(ui_daemon) as c:
        nic_attach = next(iter(c.call("vm.device.nic_attach_choices")))
    vm = make_vm(ui_daemon, devices=[{"attributes": {"dtype": "NIC", "nic_attach": nic_attach, "type": "VIRTIO"}}])
    login(page)
    page.goto(f"/ui/vms/{vm['id']}/hardware")
    nic = page.locator('tr[data-device="NIC"]')
    nic.get_by_text("VIRTIO").wait_for()
    nic.get_by_role("button", name="Edit").click()
    page.get_by_label("Adapter").select_option("E1000")
    page.get_by_role("dialog").get_by_role("button", name="Save").click()
    nic.get_by_text("E1000").wait_for()
    nic.get_by_role("button", name="Remove").click()
    page.get_by_role("dialog").get_by_role("button", name="Remove", exact=True).click()
    page.get_by_text("No devices.").wait_for()
    with root(ui_daemon) as c:
        assert c.call("vm.device.query", [["vm", "=", vm["id"]]]) == []


def test_snapshot_with_ram_taken_from_the_page(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, memory=128)
    with root(ui_daemon) as c:
        c.call("vm.start", vm["id"])
    try:
        login(page)
        page.goto(f"/ui/vms/{vm['id']}/snapshots")
        page.get_by_role("button", name="Take snapshot").click()
        page.get_by_label("Name").fill("live")
        page.get_by_label("Include the RAM of the running guest").check()
        page.get_by_role("button", name="Take", exact=True).click()
        item = page.locator("ul.tree li", has_text="live")
        item.get_by_text("with RAM").wait_for(timeout=120000)
        shot(page, "vm-snapshot-with-ram")
        with root(ui_daemon) as c:
            [snap] = c.call("vm.snapshot.query", [["vm", "=", vm["id"]]])
            assert snap["memory"] is True and c.call("vm.status", vm["id"])["state"] == "RUNNING"
    finally:
        with root(ui_daemon) as c:
            c.call("vm.poweroff", vm["id"])
