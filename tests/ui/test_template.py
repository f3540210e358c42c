"""Templates in the web UI: "Convert to template" in the VM's settings, a template's Start refused, and the clone
dialog's "Linked clone" checkbox (offered for templates only) making a linked clone."""
from __future__ import annotations

import re
from typing import Any

from tests.support import Daemon, unique
from tests.ui.conftest import axe_violations, login, make_vm, root, shot


def test_convert_to_template_then_linked_clone(page: Any, ui_daemon: Daemon) -> None:
    disk = {"dtype": "DISK", "create_zvol": True, "zvol_name": f"{ui_daemon.pool}/{unique('tpl')}",
            "zvol_volsize": 1 << 20}
    vm = make_vm(ui_daemon, devices=[{"attributes": disk}])
    clone_name = unique("linked")
    try:
        login(page)
        page.goto(f"/ui/vms/{vm['id']}")
        page.get_by_role("button", name="Clone", exact=True).click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name of the clone").wait_for()
        # A regular VM has only full clones.
        assert dialog.get_by_label("Linked clone").count() == 0
        dialog.get_by_role("button", name="Cancel").click()

        page.goto(f"/ui/vms/{vm['id']}/settings")
        page.get_by_role("button", name="Convert to template").click()
        page.get_by_role("button", name="Make a regular VM again").wait_for()
        assert page.get_by_role("button", name=re.compile(r"^Start")).is_disabled()
        assert axe_violations(page) == []
        shot(page, "template-settings")

        page.get_by_role("button", name="Clone", exact=True).click()
        dialog = page.get_by_role("dialog")
        dialog.get_by_label("Name of the clone").fill(clone_name)
        dialog.get_by_label("Linked clone").check()
        assert axe_violations(page) == []
        shot(page, "template-linked-clone")
        dialog.get_by_role("button", name="Clone", exact=True).click()
        page.get_by_text(f"Clone {vm['name']}: done").wait_for()
        with root(ui_daemon) as c:
            (clone,) = c.call("vm.query", [["name", "=", clone_name]])
            assert clone["linked_clone"] and clone["cloned_from"] == vm["id"] and not clone["template"]
            c.call("vm.delete", clone["id"], {"zvols": True})
        page.get_by_role("button", name="Make a regular VM again").click()
        page.get_by_role("button", name="Convert to template").wait_for()
    finally:
        with root(ui_daemon) as c:
            for other in c.call("vm.query", [["name", "=", clone_name]]):
                c.call("vm.delete", other["id"], {"zvols": True})
            c.call("vm.delete", vm["id"], {"zvols": True})
