"""Browser tests of the web UI: a private daemon, Debian's Chromium driven by Playwright, axe-core.

Screenshots go to tests/artifacts/ui/ (the run's output directory) for a reviewer to look at.
"""
from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest

from midclt.client import Client
from tests.support import ROOT, Daemon, cleanup_libvirt, start_daemon, stop_daemon, unique

CHROMIUM = "/usr/bin/chromium"
AXE = ROOT / "middlewared" / "plugins" / "webui" / "node_modules" / "axe-core" / "axe.min.js"
ARTIFACTS = ROOT / "tests" / "artifacts" / "ui"
ROOT_PASSWORD = "ui-root-pass"
FAST = """
[auth]
api_key_iterations = 50000
failed_login_delay = 0.0
rate_limit_calls = 100000
failed_logins_per_address = 100000
"""

pytestmark = pytest.mark.timeout(300)


@pytest.fixture(scope="session")
def ui_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A private daemon with a root password, for the browser tests."""
    if not os.path.exists(CHROMIUM) or not AXE.exists():
        pytest.skip("Chromium or the web UI's npm packages are missing (make deps installs them)")
    with tempfile.TemporaryDirectory(prefix="mwui-") as tmp:
        d = start_daemon(Path(tmp), pool=unique("mwui"), extra=FAST)
        with root(d) as c:
            c.call("user.set_root_password", ROOT_PASSWORD)
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool, Path(tmp) / "db" / "middlewared.db")


def root(d: Daemon) -> Client:
    """A root client on the daemon's unix socket."""
    return Client(d.unix_uri)


def midclt(d: Daemon, *args: str) -> str:
    """Run the midclt command in another process, as an operator would."""
    out = subprocess.run([sys.executable, "-m", "midclt", "-u", d.unix_uri, *args], capture_output=True,
                         text=True, timeout=120, cwd=str(ROOT))
    assert out.returncode == 0, out.stderr
    return out.stdout


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    """Chromium for one module: Playwright's sync API holds an event loop that async tests elsewhere need."""
    from playwright.sync_api import sync_playwright
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.fixture
def page(browser: Any, ui_daemon: Daemon) -> Iterator[Any]:
    context = browser.new_context(bypass_csp=True, viewport={"width": 1920, "height": 1080}, base_url=f"http://127.0.0.1:{ui_daemon.port}")
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    # The page loads nothing from elsewhere (no CDN, no web fonts): every request goes to the daemon.
    outside: list[str] = []
    pg.on("request", lambda r: None if r.url.startswith((f"http://127.0.0.1:{ui_daemon.port}/", "data:", "blob:"))
          else outside.append(r.url))
    # Generous: the daemon and Chromium share the machine with guests under TCG emulation.
    pg.set_default_timeout(45000)
    yield pg
    context.close()
    assert not errors, errors
    assert not outside, outside


def login(page: Any, username: str = "root", password: str = ROOT_PASSWORD) -> None:
    page.goto("/ui/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.get_by_role("button", name="Log out").wait_for()


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def axe_violations(page: Any) -> list[dict[str, Any]]:
    """Serious and critical accessibility violations axe-core finds on the page as it is."""
    page.add_script_tag(path=str(AXE))
    result = page.evaluate("axe.run(document, {resultTypes: ['violations']})")
    return [{"id": v["id"], "impact": v["impact"], "nodes": [n["target"] for n in v["nodes"]][:5]}
            for v in result["violations"] if v["impact"] in ("serious", "critical")]


def make_user(d: Daemon, roles: list[str]) -> tuple[str, str, int]:
    username, password = unique("u"), unique("pw-")
    with root(d) as c:
        user = c.call("user.create", {"username": username, "password": password, "roles": roles})
    return username, password, int(user["id"])


def make_vm(d: Daemon, **fields: Any) -> dict[str, Any]:
    with root(d) as c:
        vm: dict[str, Any] = c.call("vm.create", {"name": unique("vm"), "memory": 64, "autostart": False,
                                                  "shutdown_timeout": 5, **fields})
    return vm


def wait_for(probe: Callable[[], Any], check: Callable[[Any], bool], timeout: float, what: str) -> Any:
    """Poll probe until check accepts its value; fail naming what did not come."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout} s: {value!r}"
        time.sleep(0.5)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: Any, call: Any) -> Iterator[None]:
    """Keep a screenshot of the page a failed browser test left."""
    outcome = yield
    report = outcome.get_result()
    pg = item.funcargs.get("page") if hasattr(item, "funcargs") else None
    if report.when == "call" and report.failed and pg is not None:
        try:
            shot(pg, f"FAILED-{item.name}")
        except Exception:
            pass
