"""The VM list when its first read fails: the page says so and reads it again, instead of showing an empty list."""
from __future__ import annotations

import json
import re
from typing import Any

from tests.support import Daemon
from tests.ui.conftest import axe_violations, login, make_vm, shot


def test_a_failed_list_read_is_shown_and_tried_again(page: Any, ui_daemon: Daemon) -> None:
    vm = make_vm(ui_daemon)
    refused: list[int] = []

    def route(ws: Any) -> None:
        # The page's WebSocket goes to the daemon through this relay, which answers the first vm.query with an
        # error as a daemon under strain might, and passes everything else on unchanged.
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            call = json.loads(message)
            if call.get("method") == "vm.query" and not call.get("params") and not refused:
                refused.append(call["id"])
                ws.send(json.dumps({"jsonrpc": "2.0", "id": call["id"], "error": {
                    "code": -32001, "message": "Method call error",
                    "data": {"error": 16, "errname": "EBUSY", "reason": "the database is busy", "extra": []}}}))
                return
            server.send(message)

        ws.on_message(from_page)
        server.on_message(lambda message: ws.send(message))

    page.route_web_socket(re.compile(r".*/api/current$"), route)
    login(page)
    page.get_by_role("alert").filter(has_text="Could not read the VM list: the database is busy").wait_for()
    assert page.get_by_text("No virtual machines yet.").count() == 0
    assert axe_violations(page) == []
    shot(page, "vm-list-read-failed")
    # A second later the read is tried again and the list appears; the message goes.
    page.locator(f'tr[data-vm="{vm["name"]}"]').wait_for()
    page.get_by_role("alert").filter(has_text="Could not read the VM list").wait_for(state="detached")
    assert len(refused) == 1
