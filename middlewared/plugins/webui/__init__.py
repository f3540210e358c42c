"""The web UI: a single-page application at /ui/ that speaks only the public JSON-RPC WebSocket API.

``/`` redirects to ``/ui/``; every ``/ui/...`` path that is not an asset answers index.html (the page
routes itself), never cached; assets under ``/ui/assets/<version>/`` are cached for a year and sent
gzipped to browsers that accept it. The page loads nothing from other origins (the CSP forbids it).
"""
from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Sequence

from aiohttp import web

from middlewared.plugin import Plugin
from middlewared.plugins.webui.assets import Asset, AssetsMissing, Bundle, load

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)

CSP = ("default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")
SECURITY = {"Content-Security-Policy": CSP, "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}
FOREVER = "public, max-age=31536000, immutable"


def _send(request: web.Request, asset: Asset, cache: str) -> web.Response:
    headers = {**SECURITY, "Cache-Control": cache, "Vary": "Accept-Encoding", "Content-Type": asset.content_type}
    if "gzip" in request.headers.get("Accept-Encoding", ""):
        headers["Content-Encoding"] = "gzip"
        return web.Response(body=asset.gzipped, headers=headers)
    return web.Response(body=asset.body, headers=headers)


class Site:
    """The loaded bundle (read at the first request, so a missing `make deps` is reported, not fatal)."""

    def __init__(self) -> None:
        self._bundle: Bundle | None = None

    def bundle(self) -> Bundle:
        if self._bundle is None:
            self._bundle = load()
        return self._bundle

    async def index(self, request: web.Request) -> web.Response:
        try:
            bundle = self.bundle()
        except AssetsMissing as e:
            logger.warning("web UI unavailable: %s", e)
            return web.Response(status=503, text=f"The web UI is not installed: {e}\n", headers=SECURITY)
        return _send(request, bundle.index, "no-cache")

    async def asset(self, request: web.Request) -> web.Response:
        try:
            bundle = self.bundle()
        except AssetsMissing:
            raise web.HTTPServiceUnavailable() from None
        asset = bundle.files.get(request.match_info["path"])
        if asset is None:
            raise web.HTTPNotFound()
        # An asset of another version (a page loaded before an upgrade) is served, but not kept.
        return _send(request, asset, FOREVER if request.match_info["version"] == bundle.version else "no-store")


def routes(middleware: "Middleware") -> Sequence[web.RouteDef]:
    """/, /ui, /ui/ and deep links, and the assets."""
    site = Site()

    async def root(request: web.Request) -> web.Response:
        raise web.HTTPFound("/ui/")

    return [
        web.get("/", root),
        web.get("/ui", root),
        web.get("/ui/assets/{version}/{path:.+}", site.asset),
        web.get("/ui/{tail:.*}", site.index),
    ]


PLUGIN = Plugin(name="webui", depends=("core",), routes=routes)
