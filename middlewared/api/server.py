"""The aiohttp application and its listeners: TCP (host/port) and the unix socket, same handlers."""
from __future__ import annotations

import errno
import logging
import os
import socket
import ssl
import struct
from typing import TYPE_CHECKING, Awaitable, Callable
from urllib.parse import urlsplit

from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError

from middlewared import credentials as creds
from middlewared.api import rpc
from middlewared.api.download import download
from middlewared.api.legacy import LegacyConnection
from middlewared.plugin import Plugin

if TYPE_CHECKING:
    from middlewared.middleware import Middleware

logger = logging.getLogger(__name__)


class ClientMistakes(logging.Filter):
    """aiohttp logs a malformed HTTP request as an ERROR with a traceback; it is the client's mistake: one line."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if isinstance(error, HttpProcessingError):
            record.msg, record.args = f"{record.getMessage()}: {error.message}", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.INFO, "INFO"
        return True


logging.getLogger("aiohttp.server").addFilter(ClientMistakes())

MIDDLEWARE_KEY = web.AppKey("middleware", object)
# Connections the kernel holds before the daemon accepts them (aiohttp's default, 128, refuses a burst of
# 200 clients; the kernel caps it at net.core.somaxconn).
LISTEN_BACKLOG = 1024


class ListenError(Exception):
    """A listening socket could not be opened (address in use, permission...)."""


def peer_credentials(request: web.Request) -> tuple[creds.Credentials, str, str]:
    """Credentials, origin and address of a new connection: uid 0 on the unix socket is root."""
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if sock is not None and sock.family == socket.AF_UNIX:
        raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
        pid, uid, gid = struct.unpack("3i", raw)
        origin = f"UNIX:pid={pid},uid={uid}"
        if uid == 0:
            return creds.root(), origin, f"unix:{uid}"
        return creds.ANONYMOUS, origin, f"unix:{uid}"
    peer = request.transport.get_extra_info("peername") if request.transport else None
    origin = f"TCP:{peer[0]}:{peer[1]}" if peer else "TCP:unknown"
    return creds.ANONYMOUS, origin, str(peer[0]) if peer else "unknown"


def peer_origin(request: web.Request) -> str:
    """The origin an audit record names for a request's peer (peer_credentials' origin)."""
    try:
        return peer_credentials(request)[1]
    except OSError:  # a unix socket's peer is asked for its credentials, and it may have hung up by now
        return "UNIX:gone"


def origin_allowed(request: web.Request, allowed: tuple[str, ...]) -> bool:
    """Browser pages may open the WebSocket only from the daemon's own origin or an allowed one.

    Browsers always send Origin on WebSocket handshakes and scripts usually send none, so a missing
    header passes: the check stops other web sites from driving a user's session (CSWSH).
    """
    origin = request.headers.get("Origin")
    sock = request.transport.get_extra_info("socket") if request.transport else None
    if origin is None or sock is None or sock.family == socket.AF_UNIX:
        return True
    if origin.rstrip("/") in {a.rstrip("/") for a in allowed}:
        return True
    parts = urlsplit(origin)
    scheme = "https" if request.secure else "http"
    return parts.scheme == scheme and parts.netloc.lower() == request.host.lower()


def tls_context(certificate: str, private_key: str) -> ssl.SSLContext:
    """The server TLS context of the TCP listener (TLS 1.2 at least)."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(certificate, private_key)
    return context


def build_app(middleware: "Middleware") -> web.Application:
    """The HTTP application: the JSON-RPC WebSockets, the download route, and the plugins' routes."""
    app = web.Application()

    async def accept(request: web.Request, kind: type[rpc.RpcConnection]) -> web.WebSocketResponse:
        if not origin_allowed(request, middleware.config.server.allowed_origins):
            raise web.HTTPForbidden(text="You are not allowed to access this resource")
        ws = web.WebSocketResponse(max_msg_size=rpc.MAX_MESSAGE, heartbeat=None)
        await ws.prepare(request)
        credentials, origin, address = peer_credentials(request)
        await rpc.serve(kind(middleware, ws, credentials, origin, address, request.secure))
        return ws

    async def websocket(request: web.Request) -> web.WebSocketResponse:
        return await accept(request, rpc.RpcConnection)

    async def legacy_websocket(request: web.Request) -> web.WebSocketResponse:
        return await accept(request, LegacyConnection)

    async def dl(request: web.Request) -> web.StreamResponse:
        return await download(middleware, request)

    async def versions(request: web.Request) -> web.Response:
        return web.json_response(["current"])

    app.router.add_get("/api/current", websocket)
    app.router.add_get("/websocket", legacy_websocket)
    app.router.add_get("/api/versions", versions)
    app.router.add_get("/_download/{job_id}", dl)
    for plugin in middleware.plugins:
        app.router.add_routes(plugin.routes(middleware))
        app.on_shutdown.append(_stop_serving(plugin, middleware))
    return app


def _stop_serving(plugin: Plugin, middleware: "Middleware") -> Callable[[web.Application], Awaitable[None]]:
    async def stop_serving(app: web.Application) -> None:
        await plugin.stop_serving(middleware)
    return stop_serving


def _claim_unix_path(path: str) -> None:
    """Remove a stale socket file; refuse when a live daemon answers on it."""
    os.makedirs(os.path.dirname(path) or ".", exist_ok=True)
    if not os.path.exists(path):
        return
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(path)
    except OSError:
        os.unlink(path)
        return
    finally:
        probe.close()
    raise ListenError(f"unix socket {path} is already in use by another process")


class Listeners:
    """The running HTTP server on its sockets."""

    def __init__(self, middleware: "Middleware") -> None:
        self.middleware = middleware
        self.runner = web.AppRunner(build_app(middleware), access_log=None, handle_signals=False,
                                    shutdown_timeout=2.0)
        self.unix_path = middleware.config.server.unix_socket

    async def start(self) -> None:
        """Listen on TCP and on the unix socket; raise ListenError with a one-line reason."""
        server = self.middleware.config.server
        await self.runner.setup()
        try:
            _claim_unix_path(self.unix_path)
            context = tls_context(server.tls_certificate, server.tls_private_key) \
                if server.tls_certificate else None
            await web.TCPSite(self.runner, server.host, server.port, reuse_address=True,
                              ssl_context=context, backlog=LISTEN_BACKLOG).start()
            await web.UnixSite(self.runner, self.unix_path, backlog=LISTEN_BACKLOG).start()
            os.chmod(self.unix_path, 0o666)
        except OSError as e:  # ssl.SSLError (bad certificate or key) included
            await self.runner.cleanup()
            if e.errno == errno.EADDRINUSE:
                raise ListenError(f"{server.host}:{server.port} is already in use") from None
            raise ListenError(f"cannot listen: {e.strerror or e}") from None

    async def stop(self) -> None:
        """Close client connections, then the listeners, and remove the socket file."""
        for conn in list(self.middleware.connections):
            if isinstance(conn, rpc.RpcConnection):
                await conn.close()
        await self.runner.cleanup()
        try:
            os.unlink(self.unix_path)
        except FileNotFoundError:
            pass
