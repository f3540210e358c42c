"""The web console link on the daemon's default port opens in an unmodified Chromium (Playwright).

Browsers refuse the Fetch standard's bad ports (ERR_UNSAFE_PORT); the link vm.get_display_web_uri hands out carries
the daemon's own port, so the default must be one they allow. Chromium runs with Playwright's defaults only (as root
that includes --no-sandbox): nothing that lifts the port restrictions.
"""
from __future__ import annotations

import socket
import tempfile
from pathlib import Path
from typing import AsyncIterator, Iterator
from urllib.parse import urlsplit

import pytest
from playwright.async_api import Browser, Error as PlaywrightError, async_playwright

from middlewared.config import Config
from tests.integration.test_web_console import ARTIFACTS, CANVAS_PROBE, CHROMIUM, running_spice_vm, web_client
from tests.support import Daemon, cleanup_libvirt, connect, start_daemon, stop_daemon, unique

__all__ = ["web_client"]

pytestmark = pytest.mark.timeout(300)

DEFAULT_PORT = Config().server.port


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


@pytest.fixture(scope="module")
def default_port_daemon(libvirtd: str) -> Iterator[Daemon]:
    """A daemon listening on the built-in default port."""
    if not port_is_free(DEFAULT_PORT):
        pytest.skip(f"port {DEFAULT_PORT} is taken on this host (another daemon running?)")
    with tempfile.TemporaryDirectory(prefix="mwport-") as tmp:
        d = start_daemon(Path(tmp), port=DEFAULT_PORT, pool=unique("mwport"))
        yield d
        stop_daemon(d)
        cleanup_libvirt(d.pool, Path(tmp) / "db" / "middlewared.db")


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    """Debian's Chromium, headless, launched by Playwright with no extra flags."""
    async with async_playwright() as playwright:
        chromium = await playwright.chromium.launch(executable_path=CHROMIUM)
        try:
            yield chromium
        finally:
            await chromium.close()


async def test_console_link_opens_on_the_default_port(web_client: None, default_port_daemon: Daemon,
                                                     browser: Browser) -> None:
    async with connect(default_port_daemon) as root, running_spice_vm(root) as vm:
        uri = (await root.call("vm.get_display_web_uri", vm["id"], ""))["uri"]
        assert urlsplit(uri).port == DEFAULT_PORT
        # The browser does enforce the restriction: the same link on the old default is refused unsent.
        with pytest.raises(PlaywrightError, match="ERR_UNSAFE_PORT"):
            await (await browser.new_page()).goto(uri.replace(f":{DEFAULT_PORT}/", ":6000/", 1))
        page = await browser.new_page()
        response = await page.goto(uri)
        assert response is not None and response.status == 200
        # spice-html5 connects through the daemon's bridge and draws the guest's screen (OVMF) on its canvas.
        await page.wait_for_function(f"{CANVAS_PROBE}.lit > 100", timeout=120000)
        assert "Connected to ws://" in await page.locator("#message-div").inner_text()
        ARTIFACTS.mkdir(exist_ok=True)
        await page.screenshot(path=str(ARTIFACTS / "web_console_default_port.png"))
