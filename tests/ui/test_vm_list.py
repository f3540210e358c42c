"""Log in and out, the live VM list, jobs, and what roles show, in a real browser."""
from __future__ import annotations

import re
from typing import Any

from playwright.sync_api import expect

from tests.support import Daemon, cleanup_libvirt, start_daemon, stop_daemon, unique
from tests.ui.conftest import axe_violations, login, make_user, make_vm, midclt, root, shot


def row(page: Any, name: str) -> Any:
    return page.locator(f'tr[data-vm="{name}"]')


def test_login_survives_reload_and_ends_on_logout(page: Any, ui_daemon: Daemon) -> None:
    page.goto("/")
    assert page.url.endswith("/ui/")
    page.get_by_label("Username").fill("root")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    page.get_by_text("Wrong username or password.").wait_for()
    assert axe_violations(page) == []
    shot(page, "login")
    login(page)
    page.reload()
    page.get_by_role("button", name="Log out").wait_for()
    page.get_by_role("button", name="Log out").click()
    page.get_by_role("button", name="Log in").wait_for()
    page.reload()
    page.get_by_role("button", name="Log in").wait_for()


def test_api_key_login(page: Any, ui_daemon: Daemon) -> None:
    username, _, _ = make_user(ui_daemon, ["VM_READ"])
    with root(ui_daemon) as c:
        key = c.call("api_key.create", {"name": unique("k"), "username": username})["key"]
    page.goto("/ui/")
    page.get_by_role("button", name="API key").click()
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Log in").click()
    page.get_by_text(username).wait_for()


def test_state_follows_midclt_and_stop_shows_progress(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    login(page)
    r = row(page, vm["name"])
    r.locator(".state .badge", has_text="STOPPED").wait_for()
    midclt(ui_daemon, "call", "vm.start", str(vm["id"]))  # another process; the page is not reloaded
    r.locator(".state .badge", has_text="RUNNING").wait_for(timeout=60000)
    r.locator("svg.spark").first.wait_for(timeout=30000)  # CPU and memory from the vm.stats event
    page.wait_for_timeout(3000)
    shot(page, "vm-list")
    assert axe_violations(page) == []
    r.get_by_role("button", name=f"Stop {vm['name']}").click()
    page.get_by_label("Power off if it has not stopped after the timeout").check()
    page.get_by_role("dialog").get_by_role("button", name="Stop").click()
    r.locator("progress").wait_for()  # the stop job's progress, in the VM's row
    r.locator(".state .badge", has_text="STOPPED").wait_for(timeout=90000)
    page.get_by_text(f"Stop {vm['name']}: done").wait_for()
    page.get_by_role("button", name=re.compile("^Jobs")).click()
    page.get_by_role("dialog").get_by_text("vm.stop").first.wait_for()
    assert axe_violations(page) == []
    shot(page, "jobs")


def test_search_filter_and_bulk(page: Any, ui_daemon: Daemon) -> None:
    tag = unique("bulk")
    vms = [make_vm(ui_daemon, name=f"{tag}_{i}") for i in range(3)]
    login(page)
    page.get_by_label("Search VMs").fill(tag)
    # The list is read after login and drawn on the next frame: wait for the rows rather than count at once.
    expect(page.locator("tbody tr")).to_have_count(3)
    page.get_by_label("Select all shown VMs").check()
    page.locator(".bulk").get_by_role("button", name="Start", exact=True).click()
    for vm in vms:
        row(page, vm["name"]).locator(".state .badge", has_text="RUNNING").wait_for(timeout=90000)
    page.get_by_label("State").select_option("RUNNING")
    expect(page.locator("tbody tr")).to_have_count(3)
    page.get_by_label("Select all shown VMs").check()
    page.locator(".bulk").get_by_role("button", name="Delete", exact=True).click()
    page.get_by_label("Power off running VMs first").check()
    page.get_by_role("dialog").get_by_role("button", name="Delete").click()
    page.get_by_text("No VM matches.").wait_for(timeout=90000)


def test_read_only_user_sees_no_start_button(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    username, password, _ = make_user(ui_daemon, ["VM_READ"])
    login(page, username, password)
    r = row(page, vm["name"])
    r.locator(".state .badge", has_text="STOPPED").wait_for()
    assert r.get_by_role("button", name=re.compile("Start")).count() == 0
    create = page.get_by_role("button", name=re.compile("^Create VM"))
    assert create.is_disabled() and "VM_WRITE" in (create.get_attribute("title") or "")
    assert page.get_by_role("link", name="Administration").count() == 0


def test_scoped_user_sees_only_their_groups_vms(page: Any, ui_daemon: Daemon) -> None:
    mine, other = make_vm(ui_daemon), make_vm(ui_daemon)
    username, password, user_id = make_user(ui_daemon, [])
    with root(ui_daemon) as c:
        group = c.call("vm_group.create", {"name": unique("g"), "vms": [mine["id"]]})
        c.call("acl.create", {"user": user_id, "role": "VM_WRITE", "vm_group": group["id"]})
    login(page, username, password)
    row(page, mine["name"]).locator(".state .badge", has_text="STOPPED").wait_for()
    assert row(page, other["name"]).count() == 0
    assert row(page, mine["name"]).get_by_role("button", name=f"Start {mine['name']}").is_enabled()


NO_SIDEWAYS_SCROLL = "document.documentElement.scrollWidth <= document.documentElement.clientWidth"


def test_phone_width_has_no_horizontal_scrollbar(browser: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon, description="a VM with a rather long description that must wrap or be clipped on phones")
    context = browser.new_context(bypass_csp=True, viewport={"width": 390, "height": 844},
                                  base_url=f"http://127.0.0.1:{ui_daemon.port}", color_scheme="dark")
    page = context.new_page()
    login(page)
    page.locator("tbody tr").first.wait_for()
    assert page.evaluate(NO_SIDEWAYS_SCROLL)
    assert axe_violations(page) == []
    shot(page, "vm-list-390-dark")
    for path, name in ((f"vms/{vm['id']}", "vm-summary-390"), (f"vms/{vm['id']}/hardware", "vm-hardware-390"),
                       (f"vms/{vm['id']}/settings", "vm-settings-390"), ("vms/new", "wizard-390"),
                       ("admin/audit", "admin-audit-390")):
        page.goto(f"/ui/{path}")
        page.locator("main h1").first.wait_for()
        page.wait_for_timeout(300)
        assert page.evaluate(NO_SIDEWAYS_SCROLL), path
        shot(page, name)
    context.close()


def test_keyboard_focus_is_visible(page: Any, ui_daemon: Daemon) -> None:
    make_vm(ui_daemon)
    login(page)
    page.locator("tbody tr").first.wait_for()
    for _ in range(4):
        page.keyboard.press("Tab")
    outline = page.evaluate("getComputedStyle(document.activeElement).outlineStyle")
    assert outline not in ("none", ""), outline


def test_a_terminated_session_returns_to_the_login_page(page: Any, ui_daemon: Daemon) -> None:
    username, password, _ = make_user(ui_daemon, ["VM_READ"])
    login(page, username, password)
    with root(ui_daemon) as c:
        sessions = c.call("auth.sessions", [["credentials_data.username", "=", username]])
        assert sessions
        for s in sessions:
            c.call("auth.terminate_session", s["id"])
    page.get_by_role("button", name="Log in").wait_for()
    page.get_by_text("Session terminated").wait_for()
    page.reload()  # the token was dropped: no silent login back
    page.get_by_role("button", name="Log in").wait_for()


def test_connection_loss_banner_and_reconnect(browser: Any, libvirtd: str, tmp_path: Any) -> None:
    first = start_daemon(tmp_path)
    second = None
    try:
        with root(first) as c:
            c.call("user.set_root_password", "restart-pass")
        context = browser.new_context(base_url=f"http://127.0.0.1:{first.port}")
        page = context.new_page()
        login(page, "root", "restart-pass")
        stop_daemon(first)
        page.get_by_role("alert").get_by_text("Connection to the server lost").wait_for()
        shot(page, "connection-lost")
        second = start_daemon(tmp_path, port=first.port, pool=first.pool, keep_config=True)
        # Back without a reload; the daemon's tokens did not survive its restart, so one logs in again.
        page.get_by_role("button", name="Log in").wait_for(timeout=30000)
        assert page.get_by_role("alert").count() == 0
        login(page, "root", "restart-pass")
        context.close()
    finally:
        for d in (first, second):
            if d is not None and d.process.poll() is None:
                stop_daemon(d)
        cleanup_libvirt(first.pool, tmp_path / "db" / "middlewared.db")
