"""The VNC web console: noVNC (Debian's novnc) served by the daemon shows a TCG guest's screen in headless
Chromium through the same WebSocket bridge as SPICE; the VNC display carries QEMU's clipboard agent."""
from __future__ import annotations

import asyncio
import base64
import os
import subprocess
from typing import Any, Iterator
from urllib.parse import parse_qs, urlsplit

import aiohttp
import pytest

from tests.integration.test_auth_daemon import as_root, auth_daemon
from tests.integration.test_vm_console import wait_for_console
from tests.integration.test_vm_device_fixtures import vm_with
from tests.integration.test_web_console import ARTIFACTS, CHROMIUM, base_url, chromium, connections, wait_until
from tests.support import ROOT, Daemon

__all__ = ["auth_daemon"]

pytestmark = pytest.mark.timeout(300)

NOVNC = "/usr/share/novnc"
PASSWORD = "pw123"
VNC = {"dtype": "DISPLAY", "type": "VNC", "bind": "127.0.0.1", "web": True, "password": PASSWORD}
# Sampled pixels of noVNC's canvas that are not black, and noVNC's status line.
CANVAS_PROBE = """(() => {
  const canvas = document.querySelector('#noVNC_container canvas');
  const status = document.getElementById('noVNC_status');
  const text = status ? status.innerText : '';
  if (!canvas || !canvas.width) return {lit: 0, status: text};
  const data = canvas.getContext('2d').getImageData(0, 0, canvas.width, canvas.height).data;
  let lit = 0;
  for (let i = 0; i < data.length; i += 4 * 7) if (data[i] | data[i + 1] | data[i + 2]) lit++;
  return {lit, status: text, width: canvas.width, height: canvas.height};
})()"""


@pytest.fixture(scope="module")
def novnc() -> Iterator[None]:
    """noVNC and Chromium, installed through the Makefile when missing; skip if that is impossible."""
    def missing() -> list[str]:
        return [p for p in (CHROMIUM, NOVNC) if not os.path.exists(p)]
    if missing() and os.geteuid() == 0:
        subprocess.run(["make", "-C", str(ROOT), "apt"], capture_output=True, timeout=600)
    if missing():
        pytest.skip(f"{', '.join(missing())} missing and not installable (Debian packages chromium, novnc)")
    yield


async def test_novnc_shows_the_guest_screen(novnc: None, auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root, vm_with(root, VNC, memory=256) as vm:
        await root.call("vm.start", vm["id"])
        try:
            device_id = vm["devices"][0]["id"]
            answer = await root.call("vm.get_display_web_uri", vm["id"], "")
            parts = urlsplit(answer["uri"])
            assert parts.path == f"/vm/display/{device_id}/vnc.html"
            query = parse_qs(parts.query)
            assert query["password"] == [PASSWORD] and query["autoconnect"] == ["true"]

            # The bridge speaks VNC: the server's RFB greeting comes through (a cookie from the page load).
            async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as browser:
                async with browser.get(answer["uri"]) as page:
                    assert page.status == 200 and "noVNC" in await page.text()
                async with browser.get(f"{base_url(auth_daemon)}/vm/display/{device_id}/app/ui.js") as js:
                    assert js.status == 200
                async with browser.ws_connect(f"ws://127.0.0.1:{auth_daemon.port}/vm/display/{device_id}/websockify",
                                              protocols=("binary",)) as ws:
                    greeting = await asyncio.wait_for(ws.receive(), 30)
                    assert greeting.data.startswith(b"RFB 003.")

            await wait_for_console(root, vm["id"], ("UEFI Interactive Shell",))
            uri = (await root.call("vm.get_display_web_uri", vm["id"], ""))["uri"]
            async with chromium() as page:
                await page.call("Page.navigate", url=uri)
                state = await wait_until(lambda: page.evaluate(CANVAS_PROBE), lambda s: s["lit"] > 100,
                                         what="guest screen on noVNC's canvas")
                live = await connections(root, vm["id"])
                shot = await page.call("Page.captureScreenshot", format="png")
                ARTIFACTS.mkdir(exist_ok=True)
                (ARTIFACTS / "novnc_console.png").write_bytes(base64.b64decode(shot["data"]))
                assert page.dialogs == []
            assert "Connected" in state["status"] or state["lit"] > 100, state
            assert live["live"] == 1 and live["bytes_to_client"] > 1000
        finally:
            await root.call("vm.poweroff", vm["id"])


async def test_vnc_domain_has_the_clipboard_agent(auth_daemon: Daemon) -> None:
    async with as_root(auth_daemon) as root, vm_with(root, {**VNC, "web": False}) as vm:
        import libvirt
        conn = libvirt.open("qemu:///system")
        try:
            xml = conn.lookupByName(f"{vm['id']}_{vm['name']}").XMLDesc(0)
        finally:
            conn.close()
        assert "qemu-vdagent" in xml and 'copypaste="yes"' in xml.replace("'", '"')
