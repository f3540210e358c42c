"""The audit page shows Velocity REST requests beside JSON-RPC calls, and filters them by API."""
from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from tests.support import Daemon, unique
from tests.ui.conftest import ROOT_PASSWORD, axe_violations, login, shot


def rest(daemon: Daemon, method: str, path: str, body: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {key}"} if key else {})}
    request = urllib.request.Request(f"http://127.0.0.1:{daemon.port}{path}", json.dumps(body).encode(), headers,
                                     method=method)
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return json.loads(answer.read() or b"null")
    except urllib.error.HTTPError as e:
        return json.loads(e.read())


def test_velocity_requests_on_the_audit_page(page: Any, ui_daemon: Daemon) -> None:
    stranger = unique("nobody")
    assert rest(ui_daemon, "POST", "/u/auth", {"username": stranger, "password": "wrong"})["code"] == 1100
    key = rest(ui_daemon, "POST", "/u/auth", {"username": "root", "password": ROOT_PASSWORD})["authkey"]
    group = unique("g")
    assert rest(ui_daemon, "PUT", "/u/group", {"name": group, "parent_gid": 0}, key)["name"] == group
    login(page)
    page.goto("/ui/admin/audit")
    page.get_by_label("API").select_option("VELOCITY")
    log = page.get_by_role("region", name="Audit log")
    row = log.locator("tbody tr", has_text="PUT /u/group").first
    row.wait_for()
    assert "REST" in row.inner_text() and "root" in row.inner_text()
    refused = log.locator("tbody tr", has_text=stranger).first
    assert "POST /u/auth" in refused.inner_text() and "code 1100" in refused.inner_text()
    assert log.locator("tbody tr", has_text="JSON-RPC").count() == 0
    assert axe_violations(page) == []
    shot(page, "admin-audit-velocity")
