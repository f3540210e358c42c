"""The web console against the real daemon, libvirtd and QEMU: spice-html5 in headless Chromium shows a TCG
guest's screen through the daemon's WebSocket-to-SPICE bridge, and only with a valid console token."""
from __future__ import annotations

import asyncio
import base64
import errno
import json
import os
import signal
import struct
import subprocess
import tempfile
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator, Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.integration.test_auth_daemon import as_root, auth_daemon, error_of, logged_in, make_user
from tests.integration.test_vm_console import wait_for_console
from tests.integration.test_vm_device_fixtures import vm_with
from tests.support import ROOT, Daemon, Rpc

__all__ = ["auth_daemon"]

pytestmark = pytest.mark.timeout(300)

CHROMIUM = "/usr/bin/chromium"
SPICE_HTML5 = "/usr/share/spice-html5"
ARTIFACTS = ROOT / "tests" / "artifacts"
# How machines/python.md says to run Chromium here: no sandbox as root, nothing fetched from the network.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync")
PASSWORD = "s3cret&pw"
SPICE = {"dtype": "DISPLAY", "type": "SPICE", "bind": "127.0.0.1", "web": True, "password": PASSWORD}
# Sampled pixels of the spice-html5 canvas that are not black, once OVMF has drawn its shell.
CANVAS_PROBE = """(() => {
  const canvas = document.querySelector('#spice-screen canvas');
  const messages = document.getElementById('message-div');  // null until the page has loaded
  const log = messages ? messages.innerText : '';
  if (!canvas) return {lit: 0, log};
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4 * 7) if (data[i] | data[i + 1] | data[i + 2]) lit++;
  return {lit, log, width: canvas.width, height: canvas.height};
})()"""


@pytest.fixture(scope="module")
def web_client() -> Iterator[None]:
    """spice-html5 and Chromium, installed through the Makefile when missing; skip if that is impossible."""
    def missing() -> list[str]:
        return [p for p in (CHROMIUM, SPICE_HTML5) if not os.path.exists(p)]
    if missing() and os.geteuid() == 0:
        subprocess.run(["make", "-C", str(ROOT), "apt"], capture_output=True, timeout=600)
    if missing():
        pytest.skip(f"{', '.join(missing())} missing and not installable (Debian packages chromium, spice-html5)")
    yield


@asynccontextmanager
async def running_spice_vm(rpc: Rpc) -> AsyncIterator[dict[str, Any]]:
    """A started TCG VM whose only device is a web SPICE display with a password (OVMF draws on it)."""
    async with vm_with(rpc, SPICE, memory=256) as vm:
        await rpc.call("vm.start", vm["id"])
        try:
            yield await rpc.call("vm.get_instance", vm["id"])
        finally:
            if (await rpc.call("vm.status", vm["id"]))["state"] == "RUNNING":
                await rpc.call("vm.poweroff", vm["id"])


def base_url(d: Daemon) -> str:
    return f"http://127.0.0.1:{d.port}"


async def connections(rpc: Rpc, vm_id: int) -> dict[str, Any]:
    result: dict[str, Any] = await rpc.call("vm.get_display_connections", vm_id)
    return result


class Page:
    """One Chromium tab driven over the DevTools protocol."""

    def __init__(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        self.ws = ws
        self._id = 0
        self.dialogs: list[str] = []

    async def call(self, method: str, **params: Any) -> dict[str, Any]:
        self._id += 1
        await self.ws.send_json({"id": self._id, "method": method, "params": params})
        while True:
            message = json.loads((await asyncio.wait_for(self.ws.receive(), 60)).data)
            if message.get("id") == self._id:
                assert "error" not in message, message
                result: dict[str, Any] = message["result"]
                return result
            if message.get("method") == "Page.javascriptDialogOpening":
                self.dialogs.append(message["params"]["message"])

    async def evaluate(self, expression: str) -> Any:
        return (await self.call("Runtime.evaluate", expression=expression, returnByValue=True))["result"]["value"]


@asynccontextmanager
async def chromium() -> AsyncIterator[Page]:
    """Headless Chromium with an empty profile; its first tab, driven over DevTools on a free port."""
    with tempfile.TemporaryDirectory(prefix="mwchromium-") as profile:
        process = subprocess.Popen([CHROMIUM, *CHROMIUM_FLAGS, f"--user-data-dir={profile}",
                                    "--remote-debugging-port=0", "--window-size=1024,768", "about:blank"],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            active = Path(profile) / "DevToolsActivePort"
            deadline = time.monotonic() + 30
            while not (active.exists() and active.read_text().strip()):
                assert process.poll() is None and time.monotonic() < deadline, "Chromium did not start"
                await asyncio.sleep(0.1)
            port = int(active.read_text().split()[0])
            async with aiohttp.ClientSession() as session:
                targets = await (await session.get(f"http://127.0.0.1:{port}/json/list")).json()
                tab = next(t for t in targets if t["type"] == "page")
                async with session.ws_connect(tab["webSocketDebuggerUrl"], max_msg_size=0) as ws:
                    page = Page(ws)
                    await page.call("Page.enable")
                    # Room for the page's bar and the guest's 1280x800 screen (OVMF's default mode).
                    await page.call("Emulation.setDeviceMetricsOverride", width=1296, height=840,
                                    deviceScaleFactor=1, mobile=False)
                    yield page
        finally:
            os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


async def wait_until(probe: Any, check: Any, timeout: float = 120, what: str = "condition") -> Any:
    """Poll an async probe until check(value) holds; return the value."""
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if check(value):
            return value
        assert time.monotonic() < deadline, f"no {what} after {timeout} s: {value!r}"
        await asyncio.sleep(0.5)


# -- the browser ---------------------------------------------------------------------------------
async def test_chromium_shows_the_guest_screen(web_client: None, auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root, running_spice_vm(root) as vm:
        answer = await root.call("vm.get_display_web_uri", vm["id"], "")
        assert answer["error"] is None
        device_id = vm["devices"][0]["id"]
        parts = urlsplit(answer["uri"])
        assert parts.netloc == f"127.0.0.1:{auth_daemon.port}"
        assert parts.path == f"/vm/display/{device_id}/spice_auto.html"
        assert parse_qs(parts.query)["password"] == [PASSWORD]  # root may see it: no prompt
        # Opened once OVMF has drawn (a page opened earlier leaves the parts of the guest screen that were
        # never redrawn transparent: spice-html5 does not paint its canvas black first).
        await wait_for_console(root, vm["id"], ("UEFI Interactive Shell",))
        async with chromium() as page:
            await page.call("Page.navigate", url=answer["uri"])
            state = await wait_until(lambda: page.evaluate(CANVAS_PROBE), lambda s: s["lit"] > 100,
                                     what="guest screen on the canvas")
            await asyncio.sleep(6)  # OVMF counts down 5 s before its Shell> prompt
            live = await connections(root, vm["id"])
            shot = await page.call("Page.captureScreenshot", format="png")
            ARTIFACTS.mkdir(exist_ok=True)
            (ARTIFACTS / "web_console.png").write_bytes(base64.b64decode(shot["data"]))
            assert page.dialogs == []  # no password prompt, no error alert
        assert "Connected to ws://" in state["log"]
        # One bridge per SPICE channel (main, display, inputs, cursor), each carrying bytes both ways.
        assert live["live"] >= 2 and len(live["bridges"]) == live["live"]
        assert all(b["device"] == device_id and b["remote"] == "127.0.0.1" for b in live["bridges"])
        assert all(b["bytes_to_guest"] > 0 and b["bytes_to_client"] > 0 for b in live["bridges"])
        assert live["bytes_to_client"] > 10000  # the screen
        done = await wait_until(lambda: connections(root, vm["id"]), lambda c: c["live"] == 0,
                                timeout=30, what="closed bridges")
        assert done["opened"] == done["closed"] == live["opened"]
        assert done["bytes_to_guest"] >= live["bytes_to_guest"]
        log = auth_daemon.log()
        assert f"web console {device_id}: bridge" in log and " opened from 127.0.0.1" in log
        assert PASSWORD not in log


# -- tokens --------------------------------------------------------------------------------------
def spice_link_message() -> bytes:
    """A SPICE link request for the main channel (SpiceLinkHeader + SpiceLinkMess, no capabilities)."""
    body = struct.pack("<IBBIII", 0, 1, 0, 0, 0, 18)
    return b"REDQ" + struct.pack("<III", 2, 2, len(body)) + body


async def test_console_tokens(web_client: None, auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root, running_spice_vm(root) as vm:
        device_id = vm["devices"][0]["id"]
        base = f"{base_url(auth_daemon)}/vm/display/{device_id}"
        uri = (await root.call("vm.get_display_web_uri", vm["id"], "127.0.0.1"))["uri"]
        async with aiohttp.ClientSession() as anonymous:
            for url in (f"{base}/spice_auto.html", f"{base}/spice_auto.html?auth_token=bogus", f"{base}/main.js",
                        f"{base}/websockify", f"{base}/websockify?auth_token=bogus"):
                async with anonymous.get(url) as response:
                    assert response.status == 403, url
        # The ticket opens the page once and leaves an HttpOnly session cookie for the rest of it.
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(uri) as response:
                assert response.status == 200 and b"spice-screen" in await response.read()
                cookie = response.cookies["middlewared_console"]
                assert cookie["httponly"] and cookie["path"] == f"/vm/display/{device_id}/"
                assert response.headers["Referrer-Policy"] == "no-referrer"
            for name in ("main.js", "spice.css", "thirdparty/jsbn.js", "spice_auto.html"):  # reload too
                async with browser.get(f"{base}/{name}") as response:
                    assert response.status == 200, name
            for name in ("..%2F..%2Fetc%2Fpasswd", "nothing.js", "thirdparty"):
                async with browser.get(f"{base}/{name}") as response:
                    assert response.status == 404, name
            async with browser.get(f"{base_url(auth_daemon)}/vm/display/{device_id + 1}/main.js") as response:
                assert response.status == 403  # the cookie is for this display only
            # The bridge relays SPICE: the server answers a link request with its own "REDQ" header.
            async with browser.ws_connect(f"{base.replace('http', 'ws')}/websockify",
                                          protocols=("binary",)) as ws:
                assert ws.protocol == "binary"
                await ws.send_bytes(spice_link_message())
                reply = await ws.receive(timeout=30)
                assert reply.type == aiohttp.WSMsgType.BINARY and reply.data[:4] == b"REDQ"
                assert (await connections(root, vm["id"]))["live"] == 1
        async with aiohttp.ClientSession() as other:
            async with other.get(uri) as response:
                assert response.status == 403  # the ticket was used
        # A console ticket is no login token.
        ticket = parse_qs(urlsplit((await root.call("vm.get_display_web_uri", vm["id"], ""))["uri"]).query)
        assert not await root.call("auth.login_with_token", ticket["auth_token"][0])
        await root.call("vm.poweroff", vm["id"])
        async with aiohttp.ClientSession() as late:
            fresh = urlsplit(uri)._replace(query=f"auth_token={ticket['auth_token'][0]}").geturl()
            async with late.get(fresh) as response:
                assert response.status == 403  # consumed by the login attempt
        answer = await root.call("vm.get_display_web_uri", vm["id"], "")
        assert answer == {"error": "VM is not running", "uri": None}


async def test_stopped_vm_refuses_its_session(web_client: None, auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root, running_spice_vm(root) as vm:
        uri = (await root.call("vm.get_display_web_uri", vm["id"], ""))["uri"]
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(uri) as response:
                assert response.status == 200
            await root.call("vm.poweroff", vm["id"])
            async with browser.get(uri.split("spice_auto.html")[0] + "main.js") as response:
                assert response.status == 409 and "not running" in await response.text()


async def test_password_only_for_those_who_may_change_the_vm(web_client: None, auth_daemon: Daemon) -> None:
    reader, reader_pw, _ = await make_user(auth_daemon, ["VM_READ"])
    writer, writer_pw, _ = await make_user(auth_daemon, ["VM_WRITE"])
    nobody, nobody_pw, _ = await make_user(auth_daemon, ["ACCOUNT_READ"])
    async with as_root(auth_daemon) as root, running_spice_vm(root) as vm:
        async with logged_in(auth_daemon, reader, reader_pw) as rpc:
            uri = (await rpc.call("vm.get_display_web_uri", vm["id"], "127.0.0.1"))["uri"]
            assert "password" not in parse_qs(urlsplit(uri).query)  # typed in the page instead
            assert (await connections(rpc, vm["id"]))["live"] == 0
        async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
            async with browser.get(uri) as response:
                assert response.status == 200
        async with logged_in(auth_daemon, writer, writer_pw) as rpc:
            uri = (await rpc.call("vm.get_display_web_uri", vm["id"], "127.0.0.1", {"protocol": "HTTP"}))["uri"]
            assert parse_qs(urlsplit(uri).query)["password"] == [PASSWORD]
        async with logged_in(auth_daemon, nobody, nobody_pw) as rpc:
            for method in ("vm.get_display_web_uri", "vm.get_display_connections"):
                assert (await error_of(rpc, method, vm["id"])).errno == errno.EACCES


# -- no web console ------------------------------------------------------------------------------
@pytest.mark.parametrize("devices, error", [
    ([], "Display device is not configured for this VM"),
    ([{"dtype": "DISPLAY", "type": "SPICE", "bind": "127.0.0.1", "web": False}], "Web display is not configured"),
    ([{"dtype": "DISPLAY", "type": "VNC", "bind": "127.0.0.1", "web": False}], "Web display is not configured"),
    ([SPICE], "VM is not running"),
])
async def test_uri_errors(auth_daemon: Daemon, devices: list[dict[str, Any]], error: str) -> None:
    async with as_root(auth_daemon) as root, vm_with(root, *devices) as vm:
        answer = await root.call("vm.get_display_web_uri", vm["id"], "nas.local", {"protocol": "HTTPS"})
        assert answer == {"error": error, "uri": None}
        assert await connections(root, vm["id"]) == {"live": 0, "opened": 0, "closed": 0, "bytes_to_guest": 0,
                                                     "bytes_to_client": 0, "bridges": []}


async def test_bad_hosts_are_refused(auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root, vm_with(root) as vm:
        for host in ("evil.example/x?", "a b", "nas.local#"):
            error = await error_of(root, "vm.get_display_web_uri", vm["id"], host)
            assert error.code == -32602 and error.extra[0][0].endswith("host"), error.error
