"""The web UI's files, loaded once: the app's own modules and the npm packages it imports, gzipped in memory.

Assets are served under ``/ui/assets/<version>/`` where the version is a hash of every file, so they may be
cached for a year; index.html, which names the version, is never cached.
"""
from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import re
from dataclasses import dataclass

HERE = os.path.dirname(os.path.abspath(__file__))
APP_DIR = os.path.join(HERE, "app")
MODULES_DIR = os.path.join(HERE, "node_modules")

# URL under vendor/ -> file inside node_modules (installed by `make deps` with `npm ci`).
VENDOR: dict[str, str] = {
    "preact.js": "preact/dist/preact.module.js",
    "hooks.js": "preact/hooks/dist/hooks.module.js",
    "htm.js": "htm/dist/htm.module.js",
    "xterm.js": "@xterm/xterm/lib/xterm.mjs",
    "xterm.css": "@xterm/xterm/css/xterm.css",
}
# Browsers resolve only relative module specifiers without an import map (which a strict CSP would refuse
# inline): the hooks module's bare "preact" import becomes the sibling file.
REWRITES: dict[str, tuple[bytes, bytes]] = {"hooks.js": (b'from"preact"', b'from"./preact.js"')}
# Source maps are not installed with the assets: their comments would only make browsers ask for them.
SOURCE_MAP = re.compile(rb"\n?//# sourceMappingURL=\S+\s*$")
TYPES = {".js": "text/javascript", ".mjs": "text/javascript", ".css": "text/css", ".html": "text/html",
         ".svg": "image/svg+xml", ".json": "application/json"}


class AssetsMissing(Exception):
    """The npm packages are not installed."""


@dataclass(frozen=True)
class Asset:
    """One file: its bytes, the same gzipped, and its content type."""

    body: bytes
    gzipped: bytes
    content_type: str


@dataclass(frozen=True)
class Bundle:
    """Every asset by path, the version naming them, and index.html for that version."""

    version: str
    files: dict[str, Asset]
    index: Asset


def _asset(name: str, body: bytes) -> Asset:
    ext = os.path.splitext(name)[1]
    ctype = TYPES.get(ext) or mimetypes.guess_type(name)[0] or "application/octet-stream"
    if ctype.startswith("text/") or ctype.endswith(("json", "xml")):
        ctype += "; charset=utf-8"
    return Asset(body, gzip.compress(body, 9, mtime=0), ctype)


def _read_app(app_dir: str) -> dict[str, bytes]:
    out = {}
    for root, _dirs, names in os.walk(app_dir):
        for name in names:
            path = os.path.join(root, name)
            out[os.path.relpath(path, app_dir)] = open(path, "rb").read()
    return out


def _read_vendor(modules_dir: str) -> dict[str, bytes]:
    out = {}
    for name, rel in VENDOR.items():
        path = os.path.join(modules_dir, rel)
        if not os.path.exists(path):
            raise AssetsMissing(f"{rel} is missing: run `make deps` (npm ci) to install the web UI's packages")
        body = SOURCE_MAP.sub(b"\n", open(path, "rb").read())
        if name in REWRITES:
            old, new = REWRITES[name]
            body = body.replace(old, new)
        out[f"vendor/{name}"] = body
    return out


def load(app_dir: str = APP_DIR, modules_dir: str = MODULES_DIR) -> Bundle:
    """Read and compress every file; raise AssetsMissing when the npm packages are not installed."""
    raw = _read_app(app_dir)
    raw.update(_read_vendor(modules_dir))
    template = raw.pop("index.html")
    digest = hashlib.sha256()
    for name in sorted(raw):
        digest.update(name.encode() + b"\0" + raw[name] + b"\0")
    version = digest.hexdigest()[:16]
    index = template.replace(b"{{ASSETS}}", f"/ui/assets/{version}/".encode())
    return Bundle(version, {name: _asset(name, body) for name, body in raw.items()}, _asset("index.html", index))
