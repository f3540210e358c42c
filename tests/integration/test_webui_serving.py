"""How the daemon serves the web UI: redirects, deep links, versioned cached gzipped assets, a strict CSP."""
from __future__ import annotations

import gzip
import re
from pathlib import Path

import aiohttp
import pytest

from middlewared.plugins.webui.assets import AssetsMissing, load
from tests.support import Daemon


async def test_root_redirects_and_deep_links_answer_the_page(daemon: Daemon) -> None:
    base = f"http://127.0.0.1:{daemon.port}"
    async with aiohttp.ClientSession() as s:
        async with s.get(f"{base}/", allow_redirects=False) as r:
            assert r.status == 302 and r.headers["Location"] == "/ui/"
        async with s.get(f"{base}/ui/vms/12/hardware") as r:
            text = await r.text()
            assert r.status == 200 and r.headers["Cache-Control"] == "no-cache"
            assert "script-src 'self'" in r.headers["Content-Security-Policy"]
        version = re.search(r"/ui/assets/([0-9a-f]+)/main\.js", text)
        assert version is not None
        async with s.get(f"{base}/ui/assets/{version[1]}/main.js", headers={"Accept-Encoding": "gzip"},
                         auto_decompress=False) as r:
            assert r.headers["Content-Encoding"] == "gzip" and "immutable" in r.headers["Cache-Control"]
            assert r.headers["Content-Type"].startswith("text/javascript")
            assert b"import" in gzip.decompress(await r.read())
        async with s.get(f"{base}/ui/assets/{version[1]}/vendor/hooks.js") as r:
            assert b'from"./preact.js"' in await r.read()  # no bare specifier left for the browser
        async with s.get(f"{base}/ui/assets/old/main.js") as r:
            assert r.status == 200 and r.headers["Cache-Control"] == "no-store"
        async with s.get(f"{base}/ui/assets/{version[1]}/nothing.js") as r:
            assert r.status == 404  # assets are looked up in memory, never on disk by request path


def test_first_load_is_small() -> None:
    """Everything the first page needs (all but the lazily loaded terminal) is under 500 KB gzipped."""
    bundle = load()
    total = sum(len(a.gzipped) for name, a in bundle.files.items() if "xterm" not in name) + len(bundle.index.gzipped)
    assert total < 500_000, total


def test_missing_packages_are_reported(tmp_path: Path) -> None:
    with pytest.raises(AssetsMissing, match="make deps"):
        load(modules_dir=str(tmp_path))
